"""The output-MSE protocol of the 2018 stacked-ACDC linear-approximation experiment (G. Gray,
``gngdb/pytorch-acdc``: ``linear_layer_approx.py`` and the results it recorded on 6 Nov 2018),
and the values it reported.  The targets, inputs, model and score follow that code; the fit is ours
(L-BFGS or CG in float64) unless :func:`fit_legacy` reproduces the 2018 one: scipy CG in float32
through its objective wrapper (``obj.py``, ``PyTorchObjective``), which returns the last value and
gradient whenever the parameters moved by at most 1e-4 in every coordinate, so CG stops early.

Per repeat: a target ``nn.Linear(32, 32)`` with its default initialisation (weight and bias
``U(-1/sqrt(32), 1/sqrt(32))``), 100 inputs ``X ~ U(0, 1)``, ``Y = X W^T + b`` without noise;
the model is a stack of K ACDC factors without biases, ``N(1, 0.01^2)`` diagonals, a riffle inside
every factor (between ``C`` and ``D``) and the shuffle after every factor, the last one included;
the score is the final training MSE ``mean((model(X) - Y)^2)``.  The riffle is that code's
``x.view(n, d/2, 2).permute(0, 2, 1)``: even features first, then odd ones (the inverse of
:func:`structlayers.transforms.shuffle.riffle_index`).  The permutation after the last factor is
absorbed into the targets (the MSE is invariant under permuting output columns together).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from structlayers.surgery.fit import FitOptions, FitResult
from structlayers.transforms.shuffle import Permutation

SIZE = 32
SAMPLES = 100
REPEATS = 10
#: ``PyTorchObjective.is_new``: a point is new when some coordinate moved by more than this.
STALE_TOLERANCE = 1e-4
#: The 2018 fit: scipy CG's 1000 iterations and its default ``gtol``.
FIT_2018 = FitOptions("cg", steps=1000, gtol=1e-5)

#: ``{shuffle: {K: (mean, population std)}}`` of the final training MSE over 10 repeats, fitted with
#: ``scipy.optimize.minimize(method="CG", options={"maxiter": 1000})`` in float32.
REFERENCE: dict[str, dict[int, tuple[float, float]]] = {
    "random": {1: (0.039945361018180844, 0.005887363463677418), 2: (0.02196877747774124, 0.0013313392086725547),
               4: (0.016572200693190098, 0.0012870614529237553), 8: (0.012996809277683496, 0.0012446588624042596),
               16: (0.011954690515995025, 0.0024686511387117167), 32: (0.009839443862438202, 0.0015687459345148055)},
    "riffle": {1: (0.03738211020827294, 0.0022882278375070462), 2: (0.022296894714236258, 0.0009171796806360699),
               4: (0.01644732430577278, 0.0011384906728047184), 8: (0.015047317650169135, 0.002108139076455881),
               16: (0.014236731920391321, 0.0014999212816127136), 32: (0.01347635304555297, 0.00204254258469781)},
    "none": {1: (0.042672832310199735, 0.003499810547424213), 2: (0.021928032301366328, 0.0008551766909467213),
             4: (0.016392393223941325, 0.0006724853495840596), 8: (0.016679145488888027, 0.001682481027513029),
             16: (0.019225401058793067, 0.001956640781136026), 32: (0.021551229804754258, 0.0015830259807328492)},
}


def reference(layer: str, depth: int | None, shuffle: str) -> tuple[float, float] | None:
    """The reported ``(mean, std)`` for an ACDC stack of ``depth`` with ``shuffle``, if there is one."""
    return REFERENCE.get(shuffle, {}).get(depth or 1) if layer == "acdc" else None


def riffle_2018(n: int) -> Tensor:
    """``out = x[index]`` with the even features first, then the odd ones."""
    return torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)])


@dataclass(frozen=True)
class Task:
    """One repeat: inputs, the target's weight and bias, and the outputs the model is fitted to
    (the target's outputs with the model's last shuffle undone)."""

    x: Tensor
    weight: Tensor
    bias: Tensor
    y: Tensor

    def floor_mse(self) -> float:
        """The training MSE of the best linear map without bias (least squares): what any
        bias-free layer, dense included, can reach at best."""
        solution = torch.linalg.lstsq(self.x, self.y).solution
        return float(((self.x @ solution - self.y) ** 2).mean())


def make_task(seed: int, shuffle: str, n: int = SIZE, samples: int = SAMPLES) -> Task:
    """The repeat ``seed`` for a model whose factors are each followed by ``shuffle``."""
    g = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(n)
    weight = torch.empty(n, n, dtype=torch.float64).uniform_(-bound, bound, generator=g)
    bias = torch.empty(n, dtype=torch.float64).uniform_(-bound, bound, generator=g)
    x = torch.rand(samples, n, generator=g, dtype=torch.float64)
    y = x @ weight.T + bias
    last = {"riffle": riffle_2018(n), "random": torch.randperm(n, generator=g)}.get(shuffle)
    if last is not None:
        y = y[:, torch.argsort(last)]
    return Task(x, weight, bias, y)


def use_2018_riffle(layer: nn.Module) -> None:
    """Replace every riffle permutation in ``layer`` (inner ones and those between factors) by
    :func:`riffle_2018`, through ``load_state_dict`` so that stacks refresh their fused tables."""
    state = layer.state_dict()
    changed = False
    for name, module in layer.named_modules():
        if isinstance(module, Permutation) and module.kind == "riffle":
            state[f"{name}.index" if name else "index"] = riffle_2018(module.index.numel()).to(module.index.device)
            changed = True
    if changed:
        layer.load_state_dict(state)


def fit_legacy(layer: nn.Module, task: Task, fit: FitOptions = FIT_2018,
               callback: Callable[[int, float], None] | None = None) -> FitResult:
    """The 2018 fit of ``layer`` to ``task``: the layer in float32 (converted in place), scipy CG
    (``maxiter`` and ``gtol`` of ``fit``; its other settings are CG's own), through the 2018 objective wrapper: the
    loss and gradient are recomputed only when some parameter moved by more than
    :data:`STALE_TOLERANCE` since the last evaluation, otherwise the cached ones are returned.
    ``output_mse`` is the training MSE recomputed at the final parameters."""
    import scipy.optimize  # only here: importing structlayers must not pay for scipy.optimize

    layer.float()
    x, y = task.x.float(), task.y.float()
    params = [p for p in layer.parameters() if p.requires_grad]
    sizes, shapes = [p.numel() for p in params], [p.shape for p in params]
    cache: dict[str, object] = {}
    history: list[float] = []

    def evaluate(flat: np.ndarray) -> tuple[float, np.ndarray]:
        with torch.no_grad():
            for p, chunk, shape in zip(params, np.split(flat, np.cumsum(sizes)[:-1]), shapes):
                p.copy_(torch.from_numpy(chunk.reshape(shape)))
        for p in params:
            p.grad = None
        loss = ((layer(x) - y) ** 2).mean()
        loss.backward()
        return loss.item(), torch.cat([p.grad.reshape(-1) for p in params]).double().numpy()

    def cached(flat: np.ndarray) -> tuple[float, np.ndarray]:
        last = cache.get("x")
        if last is None or float(np.abs(flat - last).max()) > STALE_TOLERANCE:  # type: ignore[operator]
            cache["x"], (cache["f"], cache["g"]) = flat.copy(), evaluate(flat)
        return cache["f"], cache["g"]  # type: ignore[return-value]

    def on_iteration(_flat: np.ndarray) -> None:
        history.append(float(cache["f"]))  # type: ignore[arg-type]
        if callback:
            callback(len(history) - 1, history[-1])

    start = time.perf_counter()
    x0 = torch.cat([p.detach().reshape(-1) for p in params]).double().numpy()
    with torch.enable_grad():
        result = scipy.optimize.minimize(lambda v: cached(v)[0], x0, jac=lambda v: cached(v)[1], method="CG",
                                         callback=on_iteration, options={"maxiter": fit.steps, "gtol": fit.gtol})
        mse, grad = evaluate(result.x)
    return FitResult(relative_error=math.nan, output_mse=mse, steps=int(result.nit),
                     seconds=time.perf_counter() - start, history=history, converged=bool(result.status == 0),
                     grad_norm=float(np.linalg.norm(grad)), loss=mse, message=str(result.message))
