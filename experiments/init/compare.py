"""Accuracy right after surgery, before any training: a trained MNIST MLP (784 -> 64 -> 10) has both
Linear layers replaced by structured ones initialised three ways (scratch, closed-form projection,
projection + L-BFGS fit), each run by ``structlayers replace ... --evaluate mnist``.

    structlayers train mnist --model mnist-mlp --epochs 8 --no-progress --out-dir runs/init/mnist-mlp
    python experiments/init/compare.py --weights runs/init/mnist-mlp/checkpoints/last.ckpt \
        --out experiments/init/results.json

The JSON holds every run's report (per-layer weight errors, parameters, FLOPs) and both accuracies.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from structlayers.cli import main

#: (label, replace arguments): the structured layers compared, all on the MLP's two Linear layers.
LAYERS = [
    ("dense (sanity)", ["--replace", "dense"]),
    ("lowrank r=8", ["--replace", "lowrank", "-o", "rank=8"]),
    ("blockdiag 49 blocks", ["--replace", "blockdiag", "-o", "groups=49"]),
    ("acdc x1", ["--replace", "acdc"]),
    ("acdc x4", ["--replace", "acdc", "--depth", "4"]),
    ("afdf x4", ["--replace", "afdf", "--depth", "4"]),
]
INITS = ["scratch", "project", "fit"]


def run(weights: str, fit_steps: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, layer_args in LAYERS:
            for init in INITS:
                out = Path(tmp) / "report.json"
                start = time.perf_counter()
                code = main(["replace", "mnist-mlp", "--weights", weights, *layer_args, "--init", init,
                             "--fit-steps", str(fit_steps), "--evaluate", "mnist", "--json", str(out)])
                if code:
                    raise SystemExit(f"{label} / {init} failed with status {code}")
                record = json.loads(out.read_text())
                record.update(label=label, seconds=round(time.perf_counter() - start, 1))
                rows.append(record)
                print(f"{label:22s} {init:8s} accuracy {record['accuracy_after']:.4f} "
                      f"(dense {record['accuracy_before']:.4f})", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    """The README table: accuracy after surgery and the layers' weight errors, per layer and init."""
    lines = ["| layer | params (fc1+fc2) | scratch | project | fit | weight error fc1 (project / fit) |",
             "|---|---|---|---|---|---|"]
    by = {(r["label"], r["init"]): r for r in rows}
    for label, _ in LAYERS:
        cells = [f"{100 * by[(label, i)]['accuracy_after']:.1f}%" for i in INITS]
        params = by[(label, "scratch")]["report"]["total_params_after"]
        errors = [by[(label, i)]["report"]["replaced"][0]["fit_error"] for i in ("project", "fit")]
        lines.append(f"| {label} | {params:,} | {' | '.join(cells)} | {errors[0]:.3f} / {errors[1]:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="the trained mnist-mlp checkpoint")
    parser.add_argument("--fit-steps", type=int, default=200, help="L-BFGS iterations per layer for --init fit")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args()
    results = run(args.weights, args.fit_steps)
    args.out.write_text(json.dumps({"weights": args.weights, "fit_steps": args.fit_steps, "runs": results}, indent=2))
    print(table(results))
