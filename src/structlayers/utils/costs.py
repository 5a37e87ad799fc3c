"""What a layer's forms cost, for :func:`structlayers.collapse` to choose between them.

A cost model is ``cost(layer, rows, form) -> float`` with ``form`` "structured" or "dense" (the
:func:`~structlayers.base.dense_linear` holding the layer's exact weight): :func:`flop_cost`
compares analytic FLOPs, :func:`measured_cost` measured forward time on the layer's device.

Measured times are cached per layer configuration (its ``repr``, which names every option and
factor), rows, dtype and machine (:func:`~structlayers.utils.cache.device_fingerprint`), in memory and on
disk (:mod:`structlayers.utils.cache`), so collapsing the same architecture again measures nothing.  Where
timing is impossible (the ``meta`` device has no kernels) :func:`measured_cost` raises
:class:`TimingUnavailable` and :func:`~structlayers.collapse` falls back to FLOPs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

from structlayers.base import StructuredLinear, dense_linear, device_dtype, linear_flops
from structlayers.utils.cache import device_fingerprint, persistent
from structlayers.utils.timing import time_interleaved

#: ``cost(layer, rows, form)`` -> a cost to minimise; ``form`` is "structured" or "dense".
CostModel = Callable[[StructuredLinear, int, str], float]
FORMS = ("structured", "dense")


class TimingUnavailable(RuntimeError):
    """The forms of a layer cannot be timed where it lives (e.g. on the ``meta`` device)."""


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")


def flop_cost(layer: StructuredLinear, rows: int, form: str) -> float:
    """Analytic FLOPs of ``form`` on ``rows`` vectors."""
    _check_form(form)
    if form == "dense":
        return linear_flops(rows, layer.in_features, layer.out_features, True).total
    return layer.flops(rows)


_MEASURED: dict[str, tuple[float, float]] = {}
_DISK = persistent("collapse_costs")


def measure_forms(layer: StructuredLinear, rows: int, repeats: int = 7) -> tuple[float, float]:
    """Median forward seconds ``(structured, dense)`` of ``layer`` on ``rows`` vectors, interleaved."""
    device, dtype = device_dtype(layer)
    if device.type == "meta":
        raise TimingUnavailable("the meta device has no kernels to time")
    x = torch.randn(max(rows, 1), layer.in_features, device=device, dtype=dtype)
    dense = dense_linear(layer)
    with torch.no_grad():
        timings = time_interleaved([lambda: layer(x), lambda: dense(x)], device, warmup=2, repeats=repeats,
                                   min_time=2e-3)
    return timings[0].median, timings[1].median


def cost_key(layer: StructuredLinear, rows: int) -> str:
    """The cache key of ``layer``'s measured forms on ``rows`` vectors: configuration, rows, dtype
    and machine (not the parameter values, which do not change the time)."""
    device, dtype = device_dtype(layer)
    config = hashlib.sha1(repr(layer).encode()).hexdigest()[:16]
    return f"{type(layer).__module__}.{type(layer).__qualname__}|{config}|rows {rows}|{dtype}|" \
           f"{device_fingerprint(device)}"


def measured_forms(layer: StructuredLinear, rows: int) -> tuple[float, float]:
    """``(structured, dense)`` forward seconds, measured once per :func:`cost_key` and cached."""
    if device_dtype(layer)[0].type == "meta":
        raise TimingUnavailable("the meta device has no kernels to time")
    key = cost_key(layer, rows)
    if key not in _MEASURED:
        stored = _DISK.get(key)
        if isinstance(stored, list) and len(stored) == 2:
            _MEASURED[key] = (float(stored[0]), float(stored[1]))
        else:
            _MEASURED[key] = measure_forms(layer, rows)
            _DISK.set(key, list(_MEASURED[key]))
    return _MEASURED[key]


def measured_cost(layer: StructuredLinear, rows: int, form: str) -> float:
    """Measured forward seconds of ``form`` (see :func:`measured_forms`); raises
    :class:`TimingUnavailable` where the layer cannot be timed."""
    _check_form(form)
    structured, dense = measured_forms(layer, rows)
    return structured if form == "structured" else dense


def clear_measurements() -> None:
    """Forget every measured cost, in this process and on disk."""
    _MEASURED.clear()
    _DISK.clear()


COST_MODELS: dict[str, CostModel] = {"flops": flop_cost, "measured": measured_cost}


def cost_model(cost: CostModel | str) -> CostModel:
    """A cost model from its name (``"flops"``, ``"measured"``) or the callable itself."""
    if callable(cost):
        return cost
    if cost in COST_MODELS:
        return COST_MODELS[cost]
    raise ValueError(f"unknown collapse cost {cost!r}; expected one of {sorted(COST_MODELS)} or a callable")
