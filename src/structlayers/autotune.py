"""``backend="auto"``: pick the faster of the FFT and dense transforms by measuring, once per key.

The key is (layer type, size, block, inner shuffle, rows, device, dtype); the decision is cached
for the life of the process (:func:`cache` shows it, :func:`clear` forgets it).  Timing runs the
layer's own ``square_forward`` under ``torch.no_grad`` on a random input of the real shape, both
backends interleaved, so it measures exactly what ``forward`` will run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from structlayers.timing import time_interleaved

CANDIDATES = ("fft", "dense")


@dataclass(frozen=True)
class TuneKey:
    layer: str
    size: int
    block: int
    inner_shuffle: bool
    rows: int
    device: str
    dtype: str


_DECISIONS: dict[TuneKey, str] = {}


def _key(layer, rows: int, device: torch.device, dtype: torch.dtype) -> TuneKey:
    device = torch.device(device)
    return TuneKey(layer.name, layer.size, layer.block, layer.inner is not None, int(rows), str(device), str(dtype))


def cached_backend(layer, rows: int, device: torch.device, dtype: torch.dtype) -> str | None:
    """The cached decision for this layer shape and call, or ``None`` if not measured yet."""
    return _DECISIONS.get(_key(layer, rows, device, dtype))


def choose_backend(layer, rows: int, device: torch.device, dtype: torch.dtype, repeats: int = 5) -> str:
    """The faster backend of ``layer`` (a diagonal-transform factor) on ``rows`` vectors (cached)."""
    key = _key(layer, rows, device, dtype)
    decision = _DECISIONS.get(key)
    if decision is None:
        x = torch.randn(max(int(rows), 1), layer.size, device=device, dtype=dtype)
        with torch.no_grad():
            fns = [lambda b=b: layer.square_forward(x, backend=b) for b in CANDIDATES]
            timings = time_interleaved(fns, torch.device(device), warmup=1, repeats=repeats, min_time=2e-3)
        decision = CANDIDATES[min(range(len(CANDIDATES)), key=lambda i: timings[i].median)]
        _DECISIONS[key] = decision
    return decision


def cache() -> dict[TuneKey, str]:
    """A copy of every decision made so far."""
    return dict(_DECISIONS)


def clear() -> None:
    _DECISIONS.clear()
