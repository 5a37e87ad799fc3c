"""The test of the verdict test: how often "beats SVD" says yes or no when the true mean paired
difference is 0, for the rule the studies use, the 95% t-interval it was calibrated against, and
the percentile bootstrap before that; and what the rule's level costs in power.

    python experiments/approx/verdict_null.py   # writes experiments/approx/verdict_null.json (~6 min)

The nulls: the synthetic ones of :data:`~structlayers.lab.approx.stats.NULLS`, and per families
record (``families_*.json``) its recorded differences: each configuration's per-seed differences
(layer error - SVD error) minus their mean, pooled over the record's configurations and drawn with
replacement (``recorded:<target>``, with their skewness).  The power: the rate of ``yes`` at a true
difference of -0.5 and -1 standard deviation of normal differences, with 5 seeds.  The calibration:
per level tried for the rule, the largest false-positive rate over every null and seed count, and
whether it lies below 5% by more than 3 Monte Carlo standard errors (the rule's level is the lowest
that does).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from structlayers.lab.approx.stats import LEVEL, NULLS, RULE, VerdictRates, resampled, skewness, verdict_rates

HERE = Path(__file__).resolve().parent
SEEDS = (3, 5, 8)
#: The t-interval's levels tried for the rule: from the 95% it replaced to the rule's, in steps of 0.5%.
T_LEVELS = tuple(round(0.95 + 0.005 * i, 3) for i in range(round((LEVEL - 0.95) / 0.005) + 1))
#: (rule, level): the t-interval at every level tried, and the percentile bootstrap before it.
RULES = (*(("t", level) for level in T_LEVELS), ("bootstrap", 0.95))
#: Simulated studies per (rule, null, seeds): the t rule is vectorised, the bootstrap resamples.
TRIALS = {"t": 200_000, "bootstrap": 10_000}
POWER_SEEDS, POWER_SHIFTS = 5, (-0.5, -1.0)


def recorded_differences(record: dict) -> np.ndarray:
    """The record's per-seed differences (layer - SVD) minus their configuration's mean, pooled
    (configurations with a NaN or a single seed left out)."""
    by_job: dict[int, list[float]] = defaultdict(list)
    for run in record["runs"]:
        by_job[run["job"]].append(run["relative_error"] - run["svd_error"])
    groups = [np.asarray(d) for d in by_job.values() if len(d) > 1 and not any(math.isnan(x) for x in d)]
    return np.concatenate([g - g.mean() for g in groups])


def as_record(rates: VerdictRates) -> dict:
    decided = rates.false_positive_rate if rates.shift == 0 else rates.yes
    key = "false_positive_rate" if rates.shift == 0 else "yes_rate"
    return {**asdict(rates), key: decided, "standard_error": rates.standard_error(decided)}


def main() -> None:
    pools = {f"recorded:{p.stem.removeprefix('families_')}": (p.name, recorded_differences(json.loads(p.read_text())))
             for p in sorted(HERE.glob("families_*.json"))}
    nulls = {**NULLS, **{name: resampled(values) for name, (_, values) in pools.items()}}
    rates = [as_record(verdict_rates(rule, null, seeds, TRIALS[rule], level=level, seed=seeds, nulls=nulls))
             for rule, level in RULES for null in nulls for seeds in SEEDS]
    power = [as_record(verdict_rates("t", "normal", POWER_SEEDS, TRIALS["t"], level=level, shift=shift))
             for level in (LEVEL, 0.95) for shift in POWER_SHIFTS]
    calibration = []
    for level in T_LEVELS:
        worst = max((r for r in rates if r["rule"] == "t" and r["level"] == level),
                    key=lambda r: r["false_positive_rate"])
        within = worst["false_positive_rate"] + 3 * worst["standard_error"] <= 0.05
        calibration.append({"level": level, "worst": worst, "within_5_percent": within})
    for r in rates:
        print(f"{r['rule']:>9} {r['level']:.3f} {r['null']:>33} seeds {r['seeds']}: false-positive rate "
              f"{100 * r['false_positive_rate']:.2f}% +- {100 * r['standard_error']:.2f}%")
    for c in calibration:
        print(f"calibration: t {c['level']:.3f}: worst false-positive rate "
              f"{100 * c['worst']['false_positive_rate']:.2f}% ({c['worst']['null']}, {c['worst']['seeds']} seeds), "
              f"below 5% by 3 standard errors: {c['within_5_percent']}")
    for r in power:
        print(f"power, t {r['level']:.3f}, {r['seeds']} seeds, true difference {r['shift']:+.1f} sd: yes "
              f"{100 * r['yes_rate']:.2f}% +- {100 * r['standard_error']:.2f}%")
    recorded = {name: {"file": file, "differences": len(values), "skewness": skewness(values)}
                for name, (file, values) in pools.items()}
    out = HERE / "verdict_null.json"
    out.write_text(json.dumps({"command": "python experiments/approx/verdict_null.py",
                               "chosen": {"rule": "t", "level": LEVEL, "name": RULE}, "seeds": list(SEEDS),
                               "recorded_nulls": recorded, "rates": rates, "power": power,
                               "calibration": calibration}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
