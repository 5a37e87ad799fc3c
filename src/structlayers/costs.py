"""What a layer's forms cost, for :func:`structlayers.collapse` to choose between them.

A cost model is ``cost(layer, rows, form) -> float`` with ``form`` "structured" or "dense" (the
:func:`~structlayers.base.dense_linear` holding the layer's exact weight): :func:`flop_cost`
compares analytic FLOPs, :func:`measured_cost` measured forward time on the layer's device.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch

from structlayers.base import StructuredLinear, dense_linear, device_dtype, linear_flops
from structlayers.timing import time_interleaved

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


_MEASURED: weakref.WeakKeyDictionary[StructuredLinear, dict[int, tuple[float, float]]] = weakref.WeakKeyDictionary()


def measure_forms(layer: StructuredLinear, rows: int, repeats: int = 7) -> tuple[float, float]:
    """Median forward seconds ``(structured, dense)`` of ``layer`` on ``rows`` vectors, interleaved."""
    device, dtype = device_dtype(layer)
    x = torch.randn(max(rows, 1), layer.in_features, device=device, dtype=dtype)
    dense = dense_linear(layer)
    with torch.no_grad():
        timings = time_interleaved([lambda: layer(x), lambda: dense(x)], device, warmup=2, repeats=repeats,
                                   min_time=2e-3)
    return timings[0].median, timings[1].median


def measured_cost(layer: StructuredLinear, rows: int, form: str) -> float:
    """Measured forward seconds of ``form``; both forms are timed together once per (layer, rows)
    and cached for the layer's lifetime."""
    _check_form(form)
    per_layer = _MEASURED.setdefault(layer, {})
    if rows not in per_layer:
        per_layer[rows] = measure_forms(layer, rows)
    structured, dense = per_layer[rows]
    return structured if form == "structured" else dense


COST_MODELS: dict[str, CostModel] = {"flops": flop_cost, "measured": measured_cost}


def cost_model(cost: CostModel | str) -> CostModel:
    """A cost model from its name (``"flops"``, ``"measured"``) or the callable itself."""
    if callable(cost):
        return cost
    if cost in COST_MODELS:
        return COST_MODELS[cost]
    raise ValueError(f"unknown collapse cost {cost!r}; expected one of {sorted(COST_MODELS)} or a callable")
