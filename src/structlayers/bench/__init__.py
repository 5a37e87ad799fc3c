"""Speed measurement of the structured layers: the ``structlayers bench`` harness, the memory
bandwidth / bytes-moved model, the backend autotuner behind ``backend="auto"`` and the measured
cost model for :func:`structlayers.collapse` (``cost=measured_cost``).

Submodules import lazily so that the layers can use :mod:`structlayers.bench.autotune` without an
import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from structlayers.layers.base import StructuredLinear

__all__ = ["measured_cost"]


def measured_cost(layer: StructuredLinear, rows: int, form: str) -> float:
    """Measured forward time in seconds of ``layer``'s ``form`` ("structured" or "dense") on ``rows``
    vectors; both forms are timed together, interleaved, once per layer and row count."""
    from structlayers.bench.costmodel import measured_cost as _measured

    return _measured(layer, rows, form)
