"""The paired test that judges "beats the SVD", and a test of that test.

A study fits a family and its baseline on the same targets (one per seed), so the evidence is the
list of paired differences ``d_s = error(layer, s) - error(SVD, s)``.  The verdict comes from the
two-sided Student-t interval of their mean at :data:`LEVEL`, ``mean(d) +- t_{(1 + LEVEL) / 2, n-1}
sd(d) / sqrt(n)``: ``yes`` / ``no`` when it excludes 0.

Why 97% and not 95%: the 95% interval is exact only for normal differences, and on a skewed one (a
centred Gamma(4), skewness 1) it says yes or no 6.4-6.6% of the time at a true difference of 0 with
3, 5 and 8 seeds.  ``experiments/approx/verdict_null.py`` calibrates :data:`LEVEL` on every null of
:data:`NULLS` and on the recorded differences themselves (each families record's per-seed
differences, centred per configuration and resampled): 97% is the lowest level, in steps of 0.5%
from 95%, whose false-positive rate stays below 5% by more than 3 Monte Carlo standard errors on
all of them at 3, 5 and 8 seeds (the largest: Gamma(4) at 5 seeds, 4.4%; at 96.5% it is 5.0%, too
close to call; ``verdict_null.json``, ``calibration``).  An exact sign or sign-flip
test cannot decide at all with 5 seeds (its smallest two-sided p-value is 2/32).  The price is
power: with 5 seeds and normal differences, a true difference of -0.5 / -1 standard deviation gets
``yes`` about 9% / 29% of the time at 97% against 14% / 40% at 95% (``verdict_null.json``,
``power``).  The percentile bootstrap the t-interval replaced is anti-conservative with a handful
of seeds (its resampled means understate the spread by ``sqrt((n - 1) / n)`` and ignore the t
tail): with 3 seeds it says yes or no a quarter of the time at a true difference of 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

#: The verdict interval's two-sided coverage, calibrated by ``experiments/approx/verdict_null.py``.
LEVEL = 0.97
#: The level and the rule as tables and records name them.
LEVEL_TEXT = f"{100 * LEVEL:g}%"
RULE = f"paired Student-t {LEVEL_TEXT} interval"
#: Differences within this of 0 count as 0 (fits that reach the baseline to the optimiser's tolerance).
MARGIN = 1e-6

#: ``draw(rng, shape)``: an array of simulated paired differences.
Draw = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def t_quantile(probability: float, df: int) -> float:
    """The Student-t quantile (scipy's, imported here only: ``structlayers`` must not pay for scipy.stats)."""
    from scipy.stats import t

    return float(t.ppf(probability, df))


def paired_interval(diffs: list[float], level: float = LEVEL) -> tuple[float, float]:
    """The Student-t ``level`` interval of the mean of the paired differences (NaNs with fewer than
    2 values).  Equal differences give a zero-width interval at their value."""
    if len(diffs) < 2 or any(math.isnan(d) for d in diffs):
        return math.nan, math.nan
    low, high = _t_intervals(np.asarray([diffs], dtype=np.float64), level)[0]
    return float(low), float(high)


def verdict(low: float, high: float, margin: float = MARGIN) -> str:
    """``yes`` when the whole interval of (layer error - baseline error) lies below ``-margin``,
    ``no`` when above ``+margin``, ``tie`` otherwise, ``?`` without an interval (one seed)."""
    if math.isnan(low) or math.isnan(high):
        return "?"
    if high < -margin:
        return "yes"
    if low > margin:
        return "no"
    return "tie"


def bootstrap_interval(diffs: np.ndarray, resamples: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """The percentile bootstrap interval of the mean for every row of ``diffs (trials, n)``: the
    rule the t-interval replaced, kept to measure its false-positive rate beside the new one's."""
    trials, n = diffs.shape
    picks = rng.integers(0, n, size=(trials, resamples, n))
    means = np.take_along_axis(diffs[:, None, :].repeat(resamples, axis=1), picks, axis=2).mean(axis=2)
    tail = (1 - level) / 2
    return np.stack([np.quantile(means, tail, axis=1), np.quantile(means, 1 - tail, axis=1)], axis=1)


def _t_intervals(diffs: np.ndarray, level: float) -> np.ndarray:
    n = diffs.shape[1]
    half = t_quantile(0.5 + level / 2, n - 1) * diffs.std(axis=1, ddof=1) / math.sqrt(n)
    mean = diffs.mean(axis=1)
    return np.stack([mean - half, mean + half], axis=1)


#: Zero-mean distributions of a paired difference.  ``normal``: the t-interval's own model (sd 1);
#: ``student_t3`` and ``laplace``: symmetric with heavy tails (the paired null "layer and SVD are
#: exchangeable on every target" makes the difference symmetric); ``gamma4``: a centred Gamma(4),
#: skewness 1, where the 95% t-interval exceeds its level.
NULLS: dict[str, Draw] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "student_t3": lambda rng, shape: rng.standard_t(3, shape),
    "laplace": lambda rng, shape: rng.laplace(size=shape),
    "gamma4": lambda rng, shape: rng.gamma(4.0, size=shape) - 4.0,
}


def resampled(values: np.ndarray) -> Draw:
    """An empirical null: draws with replacement from ``values`` (recorded differences, centred)."""
    return lambda rng, shape: rng.choice(values, size=shape)


def skewness(values: np.ndarray) -> float:
    """The sample skewness ``m3 / m2^1.5`` (0 for constant values)."""
    centred = values - values.mean()
    m2 = float((centred**2).mean())
    return float((centred**3).mean()) / m2**1.5 if m2 > 0 else 0.0


@dataclass(frozen=True)
class VerdictRates:
    """How often ``rule`` at ``level`` says ``yes`` and ``no`` over ``trials`` simulated studies of
    ``seeds`` paired differences drawn from ``null`` plus ``shift`` (the true mean difference)."""

    rule: str
    level: float
    null: str
    seeds: int
    shift: float
    trials: int
    yes: float
    no: float

    @property
    def false_positive_rate(self) -> float:
        """At ``shift`` 0: how often the rule decides (``yes`` or ``no``) where it should say ``tie``."""
        return self.yes + self.no

    def standard_error(self, rate: float) -> float:
        """The Monte Carlo standard error of a rate over :attr:`trials`."""
        return math.sqrt(rate * (1 - rate) / self.trials)


def verdict_rates(rule: str, null: str, seeds: int, trials: int, *, level: float = LEVEL, shift: float = 0.0,
                  seed: int = 0, resamples: int = 2000, nulls: Mapping[str, Draw] = NULLS) -> VerdictRates:
    """Simulate ``trials`` studies and judge each with ``rule`` (``t``: the Student-t interval;
    ``bootstrap``: the percentile bootstrap) at ``level`` and :data:`MARGIN`, as :func:`verdict` does.
    ``null`` names a draw in ``nulls``; ``shift`` is added to every difference (on ``normal``, in
    standard deviations)."""
    if rule not in ("t", "bootstrap"):
        raise ValueError(f"unknown rule {rule!r}; expected 't' or 'bootstrap'")
    if null not in nulls:
        raise ValueError(f"unknown null distribution {null!r}; expected one of {sorted(nulls)}")
    if seeds < 2 or trials < 1:
        raise ValueError(f"need at least 2 seeds and 1 trial, got {seeds} and {trials}")
    rng = np.random.default_rng(seed)
    diffs = nulls[null](rng, (trials, seeds)) + shift
    if rule == "t":
        intervals = _t_intervals(diffs, level)
    else:  # in chunks: the resampled means of all trials at once would not fit in memory
        intervals = np.concatenate([bootstrap_interval(chunk, resamples, level, rng)
                                    for chunk in np.array_split(diffs, max(1, trials // 500))])
    yes, no = float((intervals[:, 1] < -MARGIN).mean()), float((intervals[:, 0] > MARGIN).mean())
    return VerdictRates(rule, level, null, seeds, shift, trials, yes, no)
