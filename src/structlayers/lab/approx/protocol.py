"""The output-MSE protocol of the 2018 stacked-ACDC linear-approximation experiment (G. Gray,
``gngdb/pytorch-acdc``: ``linear_layer_approx.py`` and the results it recorded on 6 Nov 2018),
reproduced exactly, and the values it reported.

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
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from structlayers.transforms.shuffle import Permutation

SIZE = 32
SAMPLES = 100
REPEATS = 10

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
