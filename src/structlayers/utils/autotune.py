"""``backend="auto"``: pick the faster of the FFT and dense transforms by measuring, once per key.

The key is (layer type, size, block, inner shuffle, rows, device, dtype); the decision is cached for
the life of the process (:func:`cache` shows it, :func:`clear` forgets it) and on disk, under the
machine's fingerprint (:class:`~structlayers.utils.cache.Measurements`), so a later session does not
measure again; on the ``meta`` device nothing is measured and ``auto`` runs the FFT.  Timing runs
the layer's own ``square_forward`` under ``torch.no_grad`` on a random input of the real shape, both
backends interleaved, so it measures exactly what ``forward`` will run.  For a half-precision
``dtype`` (a half-precision input, or autocast) the candidates are the two ways such a call runs
(:mod:`structlayers.utils.precision`): the dense backend natively under autocast, and the FFT in
float32.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from structlayers.utils.cache import Measurements
from structlayers.utils.precision import LOW_PRECISION
from structlayers.utils.timing import TimingUnavailable, time_interleaved

CANDIDATES = ("fft", "dense")


class TuneKey(NamedTuple):
    """What a measured backend choice depends on: the layer's shape and kind, the rows, device and dtype."""

    layer: str
    size: int
    block: int
    inner_shuffle: bool
    rows: int
    device: str
    dtype: str

    def __str__(self) -> str:
        return "|".join(map(str, self))


_DECISIONS: Measurements[TuneKey, str] = Measurements("autotune", lambda v: v if v in CANDIDATES else None)


def _key(layer, rows: int, device: torch.device, dtype: torch.dtype) -> TuneKey:
    device = torch.device(device)
    return TuneKey(layer.name, layer.size, layer.block, layer.inner is not None, int(rows), str(device), str(dtype))


def cached_backend(layer, rows: int, device: torch.device, dtype: torch.dtype) -> str | None:
    """The cached decision for this layer shape and call (this process's or the disk cache's), or
    ``None`` if not measured yet."""
    return _DECISIONS.cached(_key(layer, rows, device, dtype), device)


def _candidates(layer, x: torch.Tensor, dtype: torch.dtype) -> list:
    if dtype not in LOW_PRECISION:
        return [lambda b=b: layer.square_forward(x, backend=b) for b in CANDIDATES]
    device_type = x.device.type

    def run(backend: str) -> torch.Tensor:
        if backend == "dense" and layer.native_dense:
            with torch.autocast(device_type, dtype=dtype):
                return layer.square_forward(x, backend="dense")
        with torch.autocast(device_type, enabled=False):
            return layer.square_forward(x, backend=backend)

    return [lambda b=b: run(b) for b in CANDIDATES]


def choose_backend(layer, rows: int, device: torch.device, dtype: torch.dtype, repeats: int = 5) -> str:
    """The faster backend of ``layer`` (a diagonal-transform factor) on ``rows`` vectors (cached);
    ``fft`` where nothing can be timed."""
    def measure() -> str:
        x_dtype = torch.float32 if dtype in LOW_PRECISION else dtype
        x = torch.randn(max(int(rows), 1), layer.size, device=device, dtype=x_dtype)
        with torch.no_grad():
            timings = time_interleaved(_candidates(layer, x, dtype), torch.device(device), warmup=1,
                                       repeats=repeats, min_time=2e-3)
        return CANDIDATES[min(range(len(CANDIDATES)), key=lambda i: timings[i].median)]

    try:
        return _DECISIONS.get(_key(layer, rows, device, dtype), device, measure)
    except TimingUnavailable:
        return "fft"


def cache() -> dict[TuneKey, str]:
    """A copy of every decision made or read from disk so far in this process."""
    return _DECISIONS.entries()


def clear() -> None:
    """Forget every decision, in this process and on disk."""
    _DECISIONS.clear()
