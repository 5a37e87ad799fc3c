"""Fit a layer plugin to a fixed dense target ``y = x W^T + b``, or to input/output pairs, and say
whether the optimiser converged.

:func:`fit_layer`'s objective is the relative squared Frobenius error of the effective affine map,
``(||W_hat - W||_F^2 + ...) / ||W||_F^2``, read off the layer applied to the identity and to zero.
For Gaussian inputs this is, up to a constant, the expected output MSE ``E||x W_hat - x W||^2`` of
a fit on random batches, without its sampling noise, so deterministic optimisers such as L-BFGS apply.
:func:`fit_outputs` minimises the mean squared error on given pairs ``(x, y)``.

Both are least-squares problems and run :func:`minimize`: L-BFGS-B or nonlinear CG from scipy
(exact autograd gradients, stopped by their ``ftol`` / ``gtol`` criteria), scipy's trust-region
least squares (``trf``: Gauss-Newton steps with the exact Jacobian from ``torch.func.jacrev``) or
Adam (stopped on a plateau), and report whether the stop was the optimiser's convergence test or
the step limit, with the final gradient norm.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from structlayers.base import StructuredLinear, device_dtype
from structlayers.utils.memory import check_allocation

OPTIMIZERS = ("lbfgs", "adam", "cg", "trf")
#: ``residual(forward) -> r``: the residual vector of a least-squares objective ``sum(r^2)``, computed
#: with ``forward`` standing for the layer's call (so that Jacobians can be taken functionally).
Residual = Callable[[Callable[[Tensor], Tensor]], Tensor]
#: L-BFGS-B's relative decrease test ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol``; ``trf``'s
#: ``dF < ftol F`` (and its step test ``xtol``); Adam's plateau test uses it relative to the loss.
FTOL = 1e-12
#: L-BFGS-B's and CG's gradient test ``max_i |g_i| <= gtol`` (``trf``: of the scaled gradient).
GTOL = 1e-8
#: Adam stops when ``patience`` steps lowered the best loss by less than ``ftol`` relative to it.
PATIENCE = 200
#: Adam's default learning rate (scipy's optimisers take none).
ADAM_LR = 1e-2


@dataclass(frozen=True)
class FitOptions:
    """How a fit runs (:func:`minimize`, :func:`fit_layer`, :func:`fit_outputs`): the optimizer, its
    step limit, Adam's learning rate (``None``: ``1e-2``; an error for the others) and the
    convergence tests.  The defaults are a general-purpose L-BFGS fit, which reaches far lower
    errors than Adam in as many steps; a component whose fits need other defaults declares its
    ``FitOptions`` once (:func:`structlayers.replace`: :data:`~structlayers.surgery.replace.REPLACE_FIT`)."""

    optimizer: str = "lbfgs"
    steps: int = 1000
    lr: float | None = None
    ftol: float = FTOL
    gtol: float = GTOL
    patience: int = PATIENCE

    def __post_init__(self) -> None:
        check_optimizer(self.optimizer, self.lr)
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


@dataclass
class Minimization:
    """How :func:`minimize` ended: ``converged`` is True when the optimiser's own test (``ftol``,
    ``gtol``, Adam's plateau) stopped it, False when the step limit did."""

    converged: bool
    steps: int
    grad_norm: float
    message: str
    history: list[float] = field(default_factory=list)


@dataclass
class FitResult:
    """Outcome of :func:`fit_layer` / :func:`fit_outputs`: errors of the final layer, the loss
    history and the convergence record (``steps`` is the number of steps used)."""

    relative_error: float
    output_mse: float
    steps: int
    seconds: float
    history: list[float] = field(default_factory=list)
    converged: bool = False
    grad_norm: float = math.nan
    loss: float = math.nan
    message: str = ""


def check_optimizer(optimizer: str, lr: float | None) -> None:
    """Reject unknown optimisers and a learning rate for the scipy ones, which take none."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}")
    if lr is not None and optimizer != "adam":
        raise ValueError(f"a learning rate applies to adam only; {optimizer} chooses its step by line search "
                         "(omit lr)")
    if lr is not None and not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")


def _single_threaded_blas() -> AbstractContextManager[object]:
    """The optimisers' own vector operations are tiny BLAS calls, on which a multi-threaded BLAS
    spin-waits (100x slower on a loaded machine): limit BLAS to one thread when ``threadpoolctl``
    is installed (the ``lab`` extra)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _flat_grad(params: list[nn.Parameter]) -> Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def _gradient_norm(params: list[nn.Parameter], loss_fn: Callable[[], Tensor]) -> tuple[float, float]:
    """``(loss, ||grad||_2)`` at the current parameters."""
    for p in params:
        p.grad = None
    loss = loss_fn()
    loss.backward()
    return loss.item(), float(torch.linalg.vector_norm(_flat_grad(params).double()))


def _minimize_scipy(params: list[nn.Parameter], loss_fn: Callable[[], Tensor], method: str, steps: int,
                    ftol: float, gtol: float, history: list[float],
                    callback: Callable[[int, float], None] | None) -> tuple[bool, int, str]:
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
        return last[0], _flat_grad(params).double().cpu().numpy()

    def on_iteration(_flat: np.ndarray) -> None:
        # The last evaluation is the accepted point of the line search that ended the iteration.
        history.append(last[0])
        if callback:
            callback(len(history) - 1, history[-1])

    import scipy.optimize  # only here: importing structlayers must not pay for scipy.optimize

    x0 = torch.cat([p.detach().reshape(-1) for p in params]).double().cpu().numpy()
    if method == "lbfgs":
        method, options = "L-BFGS-B", {"maxiter": steps, "maxfun": 20 * steps, "maxcor": 30, "ftol": ftol,
                                       "gtol": gtol}
    else:
        method, options = "CG", {"maxiter": steps, "gtol": gtol, "norm": math.inf}
    with _single_threaded_blas():
        result = scipy.optimize.minimize(value_and_grad, x0, jac=True, method=method, callback=on_iteration,
                                         options=options)
    assign(result.x)
    # status 0: a convergence test held; 1: the iteration or evaluation limit; 2: the line search
    # failed (precision loss), which is reported, not counted as convergence.
    converged = bool(result.status == 0)
    message = result.message if isinstance(result.message, str) else str(result.message)
    return converged, int(result.nit), message


def _minimize_trf(module: nn.Module, residual: Residual, steps: int, ftol: float, gtol: float,
                  history: list[float], callback: Callable[[int, float], None] | None) -> tuple[bool, int, str]:
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    names, params = [n for n, _ in named], [p for _, p in named]
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]
    device, dtype = params[0].device, params[0].dtype

    def unflatten(flat: Tensor) -> dict[str, Tensor]:
        return dict(zip(names, [c.view(s) for c, s in zip(torch.split(flat, sizes), shapes)]))

    def r(flat: Tensor) -> Tensor:
        return residual(lambda x: torch.func.functional_call(module, unflatten(flat), (x,))).reshape(-1)

    jacobian = torch.func.jacrev(r)

    def as_tensor(x: np.ndarray) -> Tensor:
        return torch.from_numpy(x).to(device, dtype)

    def fun(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            value = r(as_tensor(x)).double().cpu().numpy()
        history.append(float(value @ value))
        if callback:
            callback(len(history) - 1, history[-1])
        return value

    def jac(x: np.ndarray) -> np.ndarray:
        return jacobian(as_tensor(x)).detach().double().cpu().numpy()

    import scipy.optimize  # only here: importing structlayers must not pay for scipy.optimize

    x0 = torch.cat([p.detach().reshape(-1) for p in params]).double().cpu().numpy()
    with torch.no_grad():
        residuals = r(as_tensor(x0)).numel()
    # The Jacobian in the layer's dtype, its float64 copy on the CPU and scipy's working copies there.
    check_allocation((dtype.itemsize + 3 * 8) * residuals * x0.size,
                     f"the trf Jacobian ({residuals} residuals x {x0.size} parameters)")
    with _single_threaded_blas():
        result = scipy.optimize.least_squares(fun, x0, jac=jac, method="trf", ftol=ftol, xtol=ftol, gtol=gtol,
                                              max_nfev=steps)
    with torch.no_grad():
        for p, chunk in zip(params, unflatten(as_tensor(result.x)).values()):
            p.copy_(chunk)
    return bool(result.status > 0), int(result.nfev), str(result.message)


def _minimize_adam(params: list[nn.Parameter], loss_fn: Callable[[], Tensor], steps: int, lr: float, ftol: float,
                   patience: int, history: list[float],
                   callback: Callable[[int, float], None] | None) -> tuple[bool, int, str]:
    opt = torch.optim.Adam(params, lr=lr)
    best, best_at_check, checked = math.inf, math.inf, 0
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        history.append(loss.item())
        best = min(best, history[-1])
        if callback:
            callback(step, history[-1])
        if step + 1 - checked >= patience:
            if best_at_check - best <= ftol * abs(best):
                return True, step + 1, f"plateau: the best loss fell by <= {ftol:g} (relative) in {patience} steps"
            best_at_check, checked = best, step + 1
    return False, steps, f"step limit ({steps}) reached"


def minimize(
    module: nn.Module,
    residual: Residual,
    fit: FitOptions = FitOptions(),
    *,
    callback: Callable[[int, float], None] | None = None,
) -> Minimization:
    """Minimise ``sum(residual(module)^2)`` over ``module``'s trainable parameters, in place, as
    ``fit`` says (:class:`FitOptions`).

    ``lbfgs``: ``scipy.optimize.minimize(method="L-BFGS-B")``, at most ``steps`` iterations,
    converged when its ``ftol`` or ``gtol`` test holds.  ``cg``: Polak-Ribiere nonlinear conjugate
    gradients (``method="CG"``), converged when ``max |g_i| <= gtol``.  ``trf``:
    ``scipy.optimize.least_squares(method="trf")`` with the exact Jacobian, at most ``steps``
    residual evaluations, converged on its ``ftol`` / ``xtol`` / ``gtol`` tests (each step costs a
    Jacobian: fewer, dearer steps).  ``adam``: ``lr`` (default 1e-2), converged on a plateau (the best
    loss fell by less than ``ftol`` relative to it over ``patience`` steps).  ``lr`` is an error for
    the others, which choose steps by line search or trust region.  ``callback(step, loss)`` after
    every step.
    """
    optimizer, steps, lr, ftol, gtol, patience = fit.optimizer, fit.steps, fit.lr, fit.ftol, fit.gtol, fit.patience
    params = [p for p in module.parameters() if p.requires_grad]

    def loss_fn() -> Tensor:
        return residual(module).square().sum()

    history: list[float] = []
    was_training = module.training
    module.train()
    try:
        if optimizer == "adam":
            converged, used, message = _minimize_adam(params, loss_fn, steps, lr or ADAM_LR, ftol, patience, history,
                                                      callback)
        elif optimizer == "trf":
            converged, used, message = _minimize_trf(module, residual, steps, ftol, gtol, history, callback)
        else:
            converged, used, message = _minimize_scipy(params, loss_fn, optimizer, steps, ftol, gtol, history,
                                                       callback)
        _, grad_norm = _gradient_norm(params, loss_fn)
    finally:
        for p in params:
            p.grad = None
        module.train(was_training)
    return Minimization(converged, used, grad_norm, message, history)


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


def _relative_error(layer: StructuredLinear, target_weight: Tensor) -> float:
    weight, _ = layer.to_dense()
    return float(torch.linalg.norm(weight.double().cpu() - target_weight.double().cpu())
                 / torch.linalg.norm(target_weight.double()))


def _fit(layer: StructuredLinear, residual: Residual, relative_error: Callable[[], float],
         mse: Callable[[float], float], fit: FitOptions, callback: Callable[[int, float], None] | None) -> FitResult:
    """:func:`minimize` on ``residual`` and the result's metrics (``mse`` of the final loss)."""
    start = time.perf_counter()
    run = minimize(layer, residual, fit, callback=callback)
    with torch.no_grad():
        loss = residual(layer).square().sum().item()
    return FitResult(relative_error=relative_error(), output_mse=mse(loss), steps=run.steps,
                     seconds=time.perf_counter() - start, history=run.history, converged=run.converged,
                     grad_norm=run.grad_norm, loss=loss, message=run.message)


def fit_layer(
    layer: StructuredLinear,
    target_weight: Tensor,
    target_bias: Tensor | None = None,
    fit: FitOptions = FitOptions(),
    *,
    callback: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``layer`` in place so that its effective weight (and bias) match the target, with
    :func:`minimize` (as ``fit`` says) on the relative squared Frobenius error.
    ``callback(step, loss)`` is called after every step (progress bars use it)."""
    if tuple(target_weight.shape) != (layer.out_features, layer.in_features):
        raise ValueError(
            f"target weight has shape {tuple(target_weight.shape)}, but layer {layer.name!r} is "
            f"{layer.in_features} -> {layer.out_features} (expected ({layer.out_features}, {layer.in_features}))"
        )
    device, dtype = device_dtype(layer)
    probe = _probe(layer.in_features, device, dtype)
    bias = torch.zeros(layer.out_features) if target_bias is None else target_bias
    target = probe @ target_weight.T.to(device, dtype) + bias.to(device, dtype)
    root = math.sqrt(float((target_weight.double() ** 2).sum()) or 1.0)

    def residual(forward: Callable[[Tensor], Tensor]) -> Tensor:
        return (forward(probe) - target) / root

    return _fit(layer, residual, lambda: _relative_error(layer, target_weight),
                lambda _loss: output_mse(layer, target_weight, target_bias), fit, callback)


def fit_outputs(
    layer: StructuredLinear,
    inputs: Tensor,
    targets: Tensor,
    *,
    target_weight: Tensor | None = None,
    fit: FitOptions = FitOptions(),
    callback: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``layer`` in place to minimise the mean squared error ``mean((layer(inputs) - targets)^2)``
    over all entries (:func:`torch.nn.functional.mse_loss`) with :func:`minimize` (as ``fit`` says).  ``output_mse``
    of the result is that training MSE; ``relative_error`` compares the layer's weight with
    ``target_weight`` when given (NaN otherwise)."""
    if inputs.shape[-1] != layer.in_features or targets.shape[-1] != layer.out_features:
        raise ValueError(f"inputs (..., {inputs.shape[-1]}) and targets (..., {targets.shape[-1]}) do not fit layer "
                         f"{layer.name!r} ({layer.in_features} -> {layer.out_features})")
    device, dtype = device_dtype(layer)
    x, y = inputs.to(device, dtype), targets.to(device, dtype)
    root = math.sqrt(y.numel())

    def residual(forward: Callable[[Tensor], Tensor]) -> Tensor:
        return (forward(x) - y) / root

    return _fit(layer, residual,
                lambda: _relative_error(layer, target_weight) if target_weight is not None else math.nan,
                lambda loss: loss, fit, callback)
