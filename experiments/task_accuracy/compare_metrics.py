"""Compare two Lightning ``metrics.csv`` logs value by value: a rerun of a recorded training run on
later code either reproduces every logged number (same data order, same numerics) or shows where
they part.  Writes JSON with the largest absolute difference and the first differing entry.

    python experiments/task_accuracy/compare_metrics.py RECORDED.csv RERUN.csv --json out.json --command "..."
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
from pathlib import Path


def compare(recorded: Path, rerun: Path) -> dict:
    a = list(csv.DictReader(recorded.open()))
    b = list(csv.DictReader(rerun.open()))
    compared, largest, first = 0, 0.0, None
    for row, (ra, rb) in enumerate(zip(a, b)):
        for key, value in ra.items():
            if not value:
                continue
            other = rb.get(key) or ""
            diff = abs(float(value) - float(other)) if other else float("inf")
            compared += 1
            largest = max(largest, diff)
            if diff and first is None:
                first = {"row": row, "column": key, "recorded": value, "rerun": other}
    return {"recorded": str(recorded), "rerun": str(rerun), "rows": [len(a), len(b)],
            "values_compared": compared, "max_abs_diff": largest, "first_difference": first,
            "identical": largest == 0.0 and len(a) == len(b)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recorded", type=Path)
    parser.add_argument("rerun", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--command", default="", help="the command that made the rerun")
    args = parser.parse_args()
    result = compare(args.recorded, args.rerun)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result.update(rerun_command=args.command, rerun_git_head=head)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
