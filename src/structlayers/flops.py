"""Layer plugins as :class:`torch.utils.flop_counter.FlopCounterMode` sees them: their analytic counts.

FlopCounterMode counts the aten operators it has formulas for (matmuls, convolutions, attention) and
nothing else, so FFT-based layers are invisible to it (and to the tools built on it, such as
Lightning's ``measure_flops`` and ``ThroughputMonitor``), and a complex matmul is charged like a real
one (a quarter of its real multiply-adds).  Here every :class:`~structlayers.base.StructuredLinear`
call made while a FlopCounterMode is active reports its own analytic
:meth:`~structlayers.base.StructuredLinear.flop_count` instead, through three marker operators
registered with :func:`torch.library.custom_op` and
:func:`torch.utils.flop_counter.register_flop_formula`:

- ``structlayers::matmul_flops``, ``structlayers::fft_flops``, ``structlayers::elementwise_flops``
  take a tensor (for its device) and a count, return an empty tensor, and their flop formula returns
  the count: they appear in FlopCounterMode's per-operator table under those names;
- while the layer computes, the active counters see no formulas (the aten ops inside the layer are
  already in its analytic count, which charges a complex multiply-add as 4 real ones);
- with autograd, the layer runs inside an :class:`torch.autograd.Function` whose backward reports
  :meth:`~structlayers.base.StructuredLinear.backward_flop_count` (by default one forward per
  gradient needed: the input's and the parameters', FlopCounterMode's convention for ``nn.Linear``).

The analytic formulas stay the single source: no plugin registers anything, and outside a
FlopCounterMode a call costs one check of the dispatch-mode stack.  Import :mod:`structlayers`
before creating the counter (a counter copies the formula registry when it is built; active
counters that predate the import get the formulas added when a layer first reports).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

KINDS = ("matmul", "fft", "elementwise")
_NAMESPACE = "structlayers"


def _define_marker(kind: str) -> Any:
    def marker(x: Tensor, flops: int) -> Tensor:
        return x.new_empty(0)

    op = torch.library.custom_op(f"{_NAMESPACE}::{kind}_flops", marker, mutates_args=())
    op.register_fake(lambda x, flops: x.new_empty(0))
    packet = getattr(getattr(torch.ops, _NAMESPACE), f"{kind}_flops")
    register_flop_formula(packet)(lambda x_shape, flops, out_shape=None, **kwargs: flops)
    return packet


MARKERS: dict[str, Any] = {kind: _define_marker(kind) for kind in KINDS}
_FORMULAS = {packet: torch.utils.flop_counter.flop_registry[packet] for packet in MARKERS.values()}

_state = threading.local()


def _hidden() -> int:
    return getattr(_state, "hidden", 0)


def active_counters() -> list[FlopCounterMode]:
    """The FlopCounterModes active on this thread (cheap when there is no dispatch mode at all)."""
    if not torch._C._len_torch_dispatch_stack():
        return []
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    counters = [getattr(m, "counter", None) for m in _get_current_dispatch_mode_stack()]
    return [c for c in counters if isinstance(c, FlopCounterMode)]


def counting() -> bool:
    """Whether a layer called now must report its analytic FLOPs (a counter is active and no
    enclosing layer is reporting already)."""
    return bool(active_counters()) and not _hidden()


class _Hide:
    """While a layer computes: the active counters see no formulas (its ops are in its analytic
    count), and layers nested inside it do not report again."""

    def __init__(self, counters: list[FlopCounterMode]) -> None:
        self.counters = counters

    def __enter__(self) -> None:
        self.saved = [c.flop_registry for c in self.counters]
        for c in self.counters:
            c.flop_registry = {}
        _state.hidden = _hidden() + 1

    def __exit__(self, *exc: object) -> None:
        _state.hidden = _hidden() - 1
        for c, registry in zip(self.counters, self.saved):
            c.flop_registry = registry


def report(like: Tensor, count: Any) -> None:
    """Charge ``count`` (a :class:`~structlayers.base.FlopCount`) to the active counters, by kind."""
    for c in active_counters():
        for packet, formula in _FORMULAS.items():
            c.flop_registry.setdefault(packet, formula)
    for kind, packet in MARKERS.items():
        n = int(getattr(count, kind))
        if n:
            packet(like, n)


def _rows(x: Tensor) -> int:
    rows = 1
    for s in x.shape[:-1]:
        rows *= int(s)
    return rows


class _Counted(torch.autograd.Function):
    """The layer's forward, hidden from the counters, with its analytic forward and backward FLOPs
    reported; the graph built inside forward is kept for backward (no recomputation)."""

    @staticmethod
    def forward(ctx, layer, forward, x, *params):  # type: ignore[override]
        counters = active_counters()
        with torch.enable_grad(), _Hide(counters):
            inner_x = x.detach().requires_grad_(ctx.needs_input_grad[2])
            # A view, so that module hooks inside the layer (FlopCounterMode's module tracker
            # registers gradient hooks on module inputs) never see the leaf ``autograd.grad`` targets.
            y = forward(inner_x.view_as(inner_x))
        ctx.layer, ctx.rows, ctx.inner = layer, _rows(x), (inner_x, y)
        ctx.n_params = len(params)
        report(y, layer.flop_count(ctx.rows))
        return y.detach()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        inner_x, y = ctx.inner
        layer = ctx.layer
        params = [p for p in layer.parameters()]
        wanted = [inner_x] if ctx.needs_input_grad[2] else []
        want_params = [p for p, need in zip(params, ctx.needs_input_grad[3:]) if need]
        with _Hide(active_counters()):
            grads = torch.autograd.grad(y, wanted + want_params, grad, allow_unused=True) if (
                wanted or want_params) and y.requires_grad else ()
        report(grad, layer.backward_flop_count(ctx.rows, input_grad=bool(wanted), param_grad=bool(want_params)))
        grads = list(grads)
        grad_x = grads.pop(0) if wanted else None
        grad_params = [grads.pop(0) if need else None for need in ctx.needs_input_grad[3:]]
        ctx.inner = None
        return (None, None, grad_x, *grad_params)


def counted_call(layer: Any, forward: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``forward(x)`` for ``layer`` with its analytic FLOPs reported to the active counters."""
    params = list(layer.parameters())
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        return _Counted.apply(layer, forward, x, *params)
    with _Hide(active_counters()):
        y = forward(x)
    report(y, layer.flop_count(_rows(x)))
    return y
