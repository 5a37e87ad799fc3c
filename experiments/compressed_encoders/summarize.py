"""Collect the compressed-encoder training runs into results/: each run's metrics.csv, summary.json
and curves.png, a table of validation accuracy per epoch (runs.json) and one figure of the
validation-accuracy curves of every run (curves.png).

    python experiments/compressed_encoders/summarize.py --runs /tmp/ce_sanity /tmp/ce_runs
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def read_metrics(path: Path) -> dict[str, list]:
    """Per-epoch validation accuracy/loss and the step each was logged at."""
    epochs: dict[int, dict] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("val/acc"):
                epochs[int(row["epoch"])] = {"step": int(row["step"]), "val_acc": float(row["val/acc"]),
                                             "val_loss": float(row["val/loss"])}
            elif row.get("train/acc_epoch"):
                epochs.setdefault(int(row["epoch"]), {})["train_acc"] = float(row["train/acc_epoch"])
    return {str(k): v for k, v in sorted(epochs.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="--out-dir folders of the runs")
    args = parser.parse_args()
    runs = {}
    for root in args.runs:
        for summary in sorted(root.rglob("summary.json")):
            version = summary.parent
            data = json.loads(summary.read_text())
            seed = version.parent.parent.name if version.parent.parent.name.startswith("seed") else ""
            label = data["name"] + (f"-{seed}" if seed else "")
            target = RESULTS / label
            target.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.csv", "summary.json", "curves.png"):
                if (version / name).exists():
                    shutil.copy(version / name, target / name)
            runs[label] = {"seconds": data["seconds"], "best_val_acc": data.get("best_score"),
                           "final_val_acc": data["metrics"].get("val/acc"), "params": data.get("params"),
                           "epochs": read_metrics(version / "metrics.csv")}
    (RESULTS / "runs.json").write_text(json.dumps(runs, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, run in runs.items():
        points = list(run["epochs"].values())
        points = [p for p in points if "val_acc" in p]
        ax = axes[1] if label.startswith("seed004") else axes[0]
        ax.plot([p["step"] for p in points], [p["val_acc"] for p in points], marker="o", label=label,
                linestyle="--" if "separable" in label and not label.startswith("seed004") else "-")
    titles = ("sanity models (9^3, band limit 1, batch 32)",
              "seed-004-shaped, compressed (21^3, band limit 2, batch 8)")
    for ax, title in zip(axes, titles):
        ax.axhline(1 / 6, color="grey", linestyle=":", label="chance")
        ax.set(xlabel="training step", ylabel="validation accuracy", title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "curves.png", dpi=120)
    print(json.dumps({k: {"best": v["best_val_acc"], "final": v["final_val_acc"], "seconds": v["seconds"]}
                      for k, v in runs.items()}, indent=2))


if __name__ == "__main__":
    main()
