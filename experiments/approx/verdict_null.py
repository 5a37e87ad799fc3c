"""The test of the verdict test: how often "beats SVD" says yes or no when the true mean paired
difference is 0, for the Student-t interval the studies use and the bootstrap it replaced.

    python experiments/approx/verdict_null.py   # writes experiments/approx/verdict_null.json (~1 min)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from structlayers.lab.approx.stats import NULLS, null_rejection_rate

HERE = Path(__file__).resolve().parent
SEEDS = (3, 5, 8)
#: Simulated studies per (rule, null, seeds): the t rule is vectorised, the bootstrap resamples.
TRIALS = {"t": 200_000, "bootstrap": 10_000}


def main() -> None:
    rates = [asdict(null_rejection_rate(rule, null, seeds, TRIALS[rule], seed=seeds))
             for rule in TRIALS for null in NULLS for seeds in SEEDS]
    for r in rates:
        print(f"{r['rule']:>9} {r['null']:>10} seeds {r['seeds']}: false-positive rate "
              f"{100 * r['false_positive_rate']:.2f}% +- {100 * r['standard_error']:.2f}%")
    out = HERE / "verdict_null.json"
    out.write_text(json.dumps({"command": "python experiments/approx/verdict_null.py", "level": 0.95,
                               "rates": rates}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
