"""Fit a layer plugin to a fixed dense target ``y = x W^T + b``.

The objective is the relative squared Frobenius error of the effective affine map,
``(||W_hat - W||_F^2 + ...) / ||W||_F^2``, read off the layer applied to the identity and to zero.
For Gaussian inputs this is, up to a constant, the expected output MSE ``E||x W_hat - x W||^2`` of
a fit on random batches, without its sampling noise, so deterministic optimisers such as L-BFGS apply.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from structlayers.base import StructuredLinear, device_dtype

OPTIMIZERS = ("adam", "lbfgs")


@dataclass
class FitResult:
    """Outcome of :func:`fit_layer`: errors of the final layer and the loss history."""

    relative_error: float
    output_mse: float
    steps: int
    seconds: float
    history: list[float] = field(default_factory=list)


def _probe(n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The identity plus a zero row: ``layer(probe)`` holds ``W^T + b`` and then ``b`` alone, so
    weight and bias are both pinned down (the identity alone lets them trade a constant)."""
    return torch.cat([torch.eye(n, device=device, dtype=dtype), torch.zeros(1, n, device=device, dtype=dtype)])


def output_mse(layer: StructuredLinear, weight: Tensor, bias: Tensor | None, samples: int = 1024,
               seed: int = 0) -> float:
    """Mean squared output error on ``samples`` fixed N(0, I) inputs."""
    g = torch.Generator().manual_seed(seed)
    device, dtype = device_dtype(layer)
    x = torch.randn(samples, layer.in_features, generator=g, dtype=torch.float64)
    target = x @ weight.double().T + (bias.double() if bias is not None else 0.0)
    with torch.no_grad():
        y = layer(x.to(device, dtype)).double().cpu()
    return float(((y - target) ** 2).mean())


def _minimize_lbfgs(
    layer: StructuredLinear,
    loss_fn: Callable[[], Tensor],
    steps: int,
    history: list[float],
    callback: Callable[[int, float], None] | None,
) -> None:
    """L-BFGS-B from scipy on the layer's parameters, with exact gradients from autograd."""
    params = [p for p in layer.parameters() if p.requires_grad]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def assign(flat: np.ndarray) -> None:
        with torch.no_grad():
            for p, chunk, shape in zip(params, np.split(flat, np.cumsum(sizes)[:-1]), shapes):
                p.copy_(torch.from_numpy(chunk.reshape(shape)).to(p))

    last = [math.inf]

    def value_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        assign(flat)
        for p in params:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        last[0] = loss.item()
        return last[0], torch.cat([p.grad.reshape(-1) for p in params]).double().cpu().numpy()

    def on_iteration(_flat: np.ndarray) -> None:
        # The last evaluation is the accepted point of the line search that ended the iteration.
        history.append(last[0])
        if callback:
            callback(len(history) - 1, history[-1])

    import scipy.optimize  # only here: importing structlayers must not pay for scipy.optimize

    x0 = torch.cat([p.detach().reshape(-1) for p in params]).double().cpu().numpy()
    result = scipy.optimize.minimize(
        value_and_grad, x0, jac=True, method="L-BFGS-B", callback=on_iteration,
        options={"maxiter": steps, "maxcor": 30, "ftol": 1e-15, "gtol": 1e-12},
    )
    assign(result.x)


def fit_layer(
    layer: StructuredLinear,
    target_weight: Tensor,
    target_bias: Tensor | None = None,
    *,
    steps: int = 1000,
    optimizer: str = "adam",
    lr: float | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``layer`` in place so that its effective weight (and bias) match the target.

    ``optimizer="adam"`` takes ``steps`` Adam steps (default lr 1e-2, cosine-decayed);
    ``"lbfgs"`` runs ``scipy.optimize.minimize(method="L-BFGS-B")`` for at most ``steps``
    iterations on the flattened parameters.
    ``callback(step, loss)`` is called after every step (progress bars use it).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}")
    if tuple(target_weight.shape) != (layer.out_features, layer.in_features):
        raise ValueError(
            f"target weight has shape {tuple(target_weight.shape)}, but layer {layer.name!r} is "
            f"{layer.in_features} -> {layer.out_features} (expected ({layer.out_features}, {layer.in_features}))"
        )
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device, dtype = device_dtype(layer)
    probe = _probe(layer.in_features, device, dtype)
    bias = torch.zeros(layer.out_features) if target_bias is None else target_bias
    target = probe @ target_weight.T.to(device, dtype) + bias.to(device, dtype)
    scale = float((target_weight.double() ** 2).sum()) or 1.0

    def loss_fn() -> Tensor:
        return ((layer(probe) - target) ** 2).sum() / scale

    history: list[float] = []
    start = time.perf_counter()
    was_training = layer.training
    layer.train()
    if optimizer == "adam":
        opt = torch.optim.Adam(layer.parameters(), lr=lr or 1e-2)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            opt.step()
            sched.step()
            history.append(loss.item())
            if callback:
                callback(step, history[-1])
    else:
        _minimize_lbfgs(layer, loss_fn, steps, history, callback)
    layer.train(was_training)
    weight, bias = layer.to_dense()
    rel = float(torch.linalg.norm(weight.double().cpu() - target_weight.double())
                / torch.linalg.norm(target_weight.double()))
    return FitResult(
        relative_error=rel,
        output_mse=output_mse(layer, target_weight, target_bias),
        steps=steps,
        seconds=time.perf_counter() - start,
        history=history,
    )
