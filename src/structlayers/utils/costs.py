"""What a layer's forms cost, for :func:`structlayers.collapse` to choose between them.

A cost model is ``cost(layer, rows, form) -> float`` with ``form`` "structured" or "dense" (the
:func:`~structlayers.base.dense_linear` holding the layer's exact weight): :func:`flop_cost`
compares analytic FLOPs, :func:`measured_cost` measured forward time on the layer's device.

Measured times are cached per layer configuration (its ``repr``, which names every option and
factor), rows, dtype, device and machine, in memory and on disk
(:class:`~structlayers.utils.cache.Measurements`), so collapsing the same architecture again
measures nothing.  Where timing is impossible (the ``meta`` device has no kernels)
:func:`measured_cost` raises :class:`~structlayers.utils.timing.TimingUnavailable` and
:func:`~structlayers.collapse` falls back to FLOPs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

from structlayers.base import StructuredLinear, dense_linear, device_dtype, linear_flops
from structlayers.utils.cache import Measurements
from structlayers.utils.timing import time_interleaved

#: ``cost(layer, rows, form)`` -> a cost to minimise; ``form`` is "structured" or "dense".
CostModel = Callable[[StructuredLinear, int, str], float]
FORMS = ("structured", "dense")


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")


def flop_cost(layer: StructuredLinear, rows: int, form: str) -> float:
    """Analytic FLOPs of ``form`` on ``rows`` vectors."""
    _check_form(form)
    if form == "dense":
        return linear_flops(rows, layer.in_features, layer.out_features, True).total
    return layer.flops(rows)


def _pair(stored: object) -> tuple[float, float] | None:
    if isinstance(stored, (list, tuple)) and len(stored) == 2:
        return float(stored[0]), float(stored[1])
    return None


_MEASURED: Measurements[str, tuple[float, float]] = Measurements("collapse_costs", _pair)


def measure_forms(layer: StructuredLinear, rows: int, repeats: int = 7) -> tuple[float, float]:
    """Median forward seconds ``(structured, dense)`` of ``layer`` on ``rows`` vectors, interleaved."""
    device, dtype = device_dtype(layer)
    x = torch.randn(max(rows, 1), layer.in_features, device=device, dtype=dtype)
    dense = dense_linear(layer)
    with torch.no_grad():
        timings = time_interleaved([lambda: layer(x), lambda: dense(x)], device, warmup=2, repeats=repeats,
                                   min_time=2e-3)
    return timings[0].median, timings[1].median


def cost_key(layer: StructuredLinear, rows: int) -> str:
    """The cache key of ``layer``'s measured forms on ``rows`` vectors: configuration, rows, dtype
    and device (not the parameter values, which do not change the time)."""
    device, dtype = device_dtype(layer)
    config = hashlib.sha1(repr(layer).encode()).hexdigest()[:16]
    return f"{type(layer).__module__}.{type(layer).__qualname__}|{config}|rows {rows}|{dtype}|{device}"


def measured_forms(layer: StructuredLinear, rows: int) -> tuple[float, float]:
    """``(structured, dense)`` forward seconds, measured once per :func:`cost_key` and machine and
    cached; raises :class:`~structlayers.utils.timing.TimingUnavailable` on the ``meta`` device."""
    return _MEASURED.get(cost_key(layer, rows), device_dtype(layer)[0], lambda: measure_forms(layer, rows))


def measured_cost(layer: StructuredLinear, rows: int, form: str) -> float:
    """Measured forward seconds of ``form`` (see :func:`measured_forms`); raises
    :class:`~structlayers.utils.timing.TimingUnavailable` where the layer cannot be timed."""
    _check_form(form)
    structured, dense = measured_forms(layer, rows)
    return structured if form == "structured" else dense


def clear_measurements() -> None:
    """Forget every measured cost, in this process and on disk."""
    _MEASURED.clear()


COST_MODELS: dict[str, CostModel] = {"flops": flop_cost, "measured": measured_cost}


def cost_model(cost: CostModel | str) -> CostModel:
    """A cost model from its name (``"flops"``, ``"measured"``) or the callable itself."""
    if callable(cost):
        return cost
    if cost in COST_MODELS:
        return COST_MODELS[cost]
    raise ValueError(f"unknown collapse cost {cost!r}; expected one of {sorted(COST_MODELS)} or a callable")
