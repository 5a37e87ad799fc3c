"""Learning curves from Lightning's CSV log: a two-panel PNG (loss, accuracy per epoch)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_epoch_metrics(*csv_paths: str | Path) -> dict[str, dict[int, float]]:
    """``{metric: {epoch: value}}`` of the epoch-level metrics in Lightning ``metrics.csv`` files.

    Give the files of a resumed run in order (one per session); an epoch logged twice (repeated
    after an interruption) keeps the latest value.
    """
    table: dict[str, dict[int, float]] = {}
    for csv_path in csv_paths:
        with Path(csv_path).open(newline="") as f:
            for row in csv.DictReader(f):
                if not row.get("epoch"):
                    continue
                epoch = int(float(row["epoch"]))
                for key, value in row.items():
                    if key in ("epoch", "step") or key.endswith("_step") or not value:
                        continue
                    table.setdefault(key.removesuffix("_epoch"), {})[epoch] = float(value)
    return table


def run_csv_files(log_dir: str | Path) -> list[Path]:
    """The ``version_N/metrics.csv`` files of a CSVLogger folder, oldest session first."""
    files = Path(log_dir).glob("version_*/metrics.csv")
    return sorted(files, key=lambda p: int(p.parent.name.removeprefix("version_")))


def plot_curves(csv_paths: Sequence[str | Path], png_path: str | Path, title: str = "") -> Path:
    """Plot training / validation loss and accuracy against the epoch into ``png_path``."""
    metrics = read_epoch_metrics(*csv_paths)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, quantity in zip(axes, ("loss", "acc")):
        for stage in ("train", "val"):
            series = metrics.get(f"{stage}/{quantity}")
            if series:
                epochs = sorted(series)
                ax.plot([e + 1 for e in epochs], [series[e] for e in epochs], marker="o", label=stage)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy" if quantity == "loss" else "accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
