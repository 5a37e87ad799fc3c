"""Wall-clock timing of callables on CPU or CUDA: warm-up, repeats, interleaving, robust summaries;
:class:`TimingUnavailable` where nothing can be timed (the ``meta`` device)."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


class TimingUnavailable(RuntimeError):
    """Nothing can be timed where it lives (the ``meta`` device has no kernels)."""


def check_timeable(device: torch.device | str) -> None:
    """Raise :class:`TimingUnavailable` for a device whose calls cannot be timed (``meta``)."""
    if torch.device(device).type == "meta":
        raise TimingUnavailable("the meta device has no kernels to time")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, including the device work it queued."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


@dataclass(frozen=True)
class Timing:
    """Repeated measurements (seconds) of one callable."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        pos = q * (len(ordered) - 1)
        lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    def paired_ratio(self, other: Timing) -> float:
        """Median over rounds of ``self / other``, for two callables timed in the same interleaved
        rounds: each ratio compares timings taken moments apart, so drifts in load cancel."""
        return statistics.median(a / b for a, b in zip(self.samples, other.samples))

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (0.05 = the middle half lies within 5%)."""
        return (self.quantile(0.75) - self.quantile(0.25)) / self.median if self.median > 0 else 0.0


def time_interleaved(
    fns: Sequence[Callable[[], object]],
    device: torch.device,
    *,
    warmup: int = 2,
    repeats: int = 10,
    min_time: float = 0.0,
    seed: int = 0,
    per_turn: str = "mean",
) -> list[Timing]:
    """Time every callable ``repeats`` times in rounds (one call of each per round), after
    ``warmup`` rounds; so slow drifts in machine load hit every candidate alike.  Each round runs
    the callables in a fresh random order (seeded): with a fixed or rotated order a callable would
    always follow the same neighbour and inherit its cache and thread state, a bias that does not
    average out.  A callable faster than ``min_time`` seconds is repeated within its turn until it
    takes that long; ``per_turn`` says what a turn records: ``mean`` (the turn's time per call) or
    ``min`` (the fastest single call of the turn: the least disturbed estimate of what the code
    itself costs, for telling apart two forms that may be the same computation)."""
    if per_turn not in ("mean", "min"):
        raise ValueError(f"per_turn must be 'mean' or 'min', got {per_turn!r}")
    check_timeable(device)
    for _ in range(warmup):
        for fn in fns:
            fn()
    inner = [1] * len(fns)
    if min_time > 0:
        for i, fn in enumerate(fns):
            inner[i] = max(1, int(min_time / max(time_once(fn, device), 1e-7)))
    samples: list[list[float]] = [[] for _ in fns]
    rng = random.Random(seed)
    order = list(range(len(fns)))
    for _ in range(repeats):
        rng.shuffle(order)
        for i in order:
            fn, k = fns[i], inner[i]
            if per_turn == "min":
                samples[i].append(min(time_once(fn, device) for _ in range(k)))
            else:
                samples[i].append(time_once(lambda fn=fn, k=k: _repeat(fn, k), device) / k)
    return [Timing(tuple(s)) for s in samples]


def _repeat(fn: Callable[[], object], k: int) -> None:
    """``k`` calls, each result dropped at once (as a training or inference loop would)."""
    for _ in range(k):
        fn()
