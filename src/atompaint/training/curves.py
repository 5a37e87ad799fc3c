"""Learning-curve PNGs from Lightning's CSV logs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402


def plot_curves(
    metrics_csv: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], png: str | os.PathLike[str]
) -> Path:
    """One panel per metric (``loss``, ``acc``, ``rmse``, ...), train and val per epoch.

    Epoch-level values (``train/loss_epoch`` or ``val/loss``) are plotted against the epoch.  Several
    CSV files (a run and its resumptions, in order) are concatenated; later epochs win.
    """
    paths = [metrics_csv] if isinstance(metrics_csv, (str, os.PathLike)) else list(metrics_csv)
    frame = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    if "epoch" not in frame:
        raise ValueError(f"{metrics_csv} has no 'epoch' column; is it a Lightning CSV log?")
    series: dict[str, dict[str, pd.Series]] = {}
    for column in frame.columns:
        if "/" not in column or column.endswith("_step"):
            continue
        stage, metric = column.split("/", 1)
        metric = metric.removesuffix("_epoch")
        values = frame[["epoch", column]].dropna().groupby("epoch")[column].last()
        if len(values):
            series.setdefault(metric, {})[stage] = values
    if not series:
        raise ValueError(f"{metrics_csv} holds no epoch-level metrics to plot")
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for ax, (metric, stages) in zip(axes[0], sorted(series.items())):
        for stage, values in sorted(stages.items()):
            ax.plot(values.index + 1, values.values, marker="o", label=stage)
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
