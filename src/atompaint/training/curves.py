"""Learning-curve PNGs from Lightning's CSV logs."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from structlayers.runs.curves import read_epoch_metrics


def plot_curves(
    metrics_csv: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], png: str | os.PathLike[str]
) -> Path:
    """One panel per metric (``loss``, ``acc``, ``rmse``, ...), train and val per epoch.

    Epoch-level values (``train/loss_epoch`` or ``val/loss``) are plotted against the epoch.  Several
    CSV files (a run and its resumptions, in order) are read in turn; later epochs win
    (:func:`structlayers.lab.training.read_epoch_metrics`).
    """
    paths = [metrics_csv] if isinstance(metrics_csv, (str, os.PathLike)) else list(metrics_csv)
    for path in paths:
        with Path(path).open(newline="") as f:
            if "epoch" not in next(csv.reader(f), []):
                raise ValueError(f"{path} has no 'epoch' column; is it a Lightning CSV log?")
    series: dict[str, dict[str, dict[int, float]]] = {}
    for key, by_epoch in read_epoch_metrics(*paths).items():
        if "/" in key:
            stage, metric = key.split("/", 1)
            series.setdefault(metric, {})[stage] = by_epoch
    if not series:
        raise ValueError(f"{metrics_csv} holds no epoch-level metrics to plot")
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for ax, (metric, stages) in zip(axes[0], sorted(series.items())):
        for stage, by_epoch in sorted(stages.items()):
            epochs = sorted(by_epoch)
            ax.plot([e + 1 for e in epochs], [by_epoch[e] for e in epochs], marker="o", label=stage)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(png)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
