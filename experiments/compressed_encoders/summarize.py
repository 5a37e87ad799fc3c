"""Collect the compressed-encoder training runs into results/: each run's metrics.csv, summary.json
and curves.png, a table of validation accuracy per epoch (runs.json), one figure of the
validation-accuracy curves of every run (curves.png) and the sanity table, per encoder over the
seeds (sanity_summary.json: final and best validation accuracy, fit seconds).

    python experiments/compressed_encoders/summarize.py --runs /tmp/ce_sanity /tmp/ce_runs

``--into <folder>`` writes one set of runs under ``results/<folder>/`` instead (a later rerun beside
the first one).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import statistics
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


def run_metrics(run: Path) -> Path:
    """A run's metrics.csv: beside its summary.json, or the CSV logger's latest ``csv/version_<n>/``."""
    if (run / "metrics.csv").exists():
        return run / "metrics.csv"
    found = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not found:
        raise FileNotFoundError(f"no metrics.csv in {run}")
    return found[-1]


def sanity_table(runs: dict[str, dict]) -> dict[str, dict]:
    """Per sanity encoder (runs named ``<name>-seed<k>``): final accuracies per seed, their mean and
    sample standard deviation, the mean best-epoch accuracy and the mean fit seconds."""
    groups: dict[str, dict[str, dict]] = {}
    for label, run in runs.items():
        name, _, seed = label.rpartition("-seed")
        if name.startswith("sanity") and seed.isdigit():
            groups.setdefault(name, {})[seed] = run
    table = {}
    for name, seeds in groups.items():
        order = sorted(seeds, key=int)
        final = [seeds[k]["final_val_acc"] for k in order]
        best = [seeds[k]["best_val_acc"] for k in order]
        table[name] = {"seeds": [int(k) for k in order], "final_val_acc": final,
                       "final_mean": statistics.fmean(final), "final_std": statistics.stdev(final),
                       "best_mean": statistics.fmean(best),
                       "seconds_mean": statistics.fmean(seeds[k]["seconds"] for k in order),
                       "params": seeds[order[0]]["params"]}
    return table


def plot_runs(runs: dict[str, dict], path: Path) -> None:
    """The validation-accuracy curves of every run in ``runs`` (the ``runs.json`` table) against the
    training step: the sanity models, and beside them the seed-004-shaped runs if there are any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"sanity models (9^3, band limit 1, batch 32)": {},
              "seed-004-shaped, compressed (21^3, band limit 2, batch 8)": {}}
    for label, run in runs.items():
        panels[list(panels)[label.startswith("seed004")]][label] = run
    panels = {title: group for title, group in panels.items() if group}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, group) in zip(axes[0], panels.items()):
        for label, run in group.items():
            points = [p for p in run["epochs"].values() if "val_acc" in p]
            ax.plot([p["step"] for p in points], [p["val_acc"] for p in points], marker="o", label=label,
                    linestyle="--" if "separable" in label and not label.startswith("seed004") else "-")
        ax.axhline(1 / 6, color="grey", linestyle=":", label="chance")
        ax.set(xlabel="training step", ylabel="validation accuracy", title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="--out-dir folders of the runs")
    parser.add_argument("--into", default="", help="a folder under results/ for this set of runs (default: results/)")
    args = parser.parse_args()
    results = RESULTS / args.into
    runs = {}
    for root in args.runs:
        for summary in sorted(root.rglob("summary.json")):
            version = summary.parent
            data = json.loads(summary.read_text())
            # --out-dir/seed<k>/<name>[/version_<n>]: the seed folder names the run's seed.
            seed = next((p for p in version.relative_to(root).parts if re.fullmatch(r"seed\d+", p)), "")
            label = data["name"] + (f"-{seed}" if seed else "")
            target = results / label
            target.mkdir(parents=True, exist_ok=True)
            metrics = run_metrics(version)
            shutil.copy(metrics, target / "metrics.csv")
            for name in ("summary.json", "curves.png"):
                if (version / name).exists():
                    shutil.copy(version / name, target / name)
            runs[label] = {"seconds": data["seconds"], "best_val_acc": data.get("best_score"),
                           "final_val_acc": data["metrics"].get("val/acc"), "params": data.get("params"),
                           "epochs": read_metrics(metrics)}
    (results / "runs.json").write_text(json.dumps(runs, indent=2))
    table = sanity_table(runs)
    (results / "sanity_summary.json").write_text(json.dumps(table, indent=2))

    plot_runs(runs, results / "curves.png")
    print(json.dumps({k: {"best": v["best_val_acc"], "final": v["final_val_acc"], "seconds": v["seconds"]}
                      for k, v in runs.items()}, indent=2))
    for name, row in table.items():
        accs = " / ".join(f"{a:.3f}" for a in row["final_val_acc"])
        print(f"{name:45s} final {accs}  mean {row['final_mean']:.3f} ({row['final_std']:.3f})  "
              f"best {row['best_mean']:.3f}  fit {row['seconds_mean']:.1f} s")


if __name__ == "__main__":
    main()
