"""Learning curves from Lightning's CSV logs: the epoch-level metrics, and a PNG of them."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


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


#: Metric panels per row of :func:`plot_curves`' figure; more metrics wrap onto further rows.
PANELS_PER_ROW = 4


def run_title(task: str, name: str, seed: int | None = None) -> str:
    """The title of a run's figures, naming the run: ``"cifar10 resnet18 all-acdc12 (seed 0)"``."""
    return f"{task} {name}" + ("" if seed is None else f" (seed {seed})")


def plot_curves(csv_paths: str | Path | Sequence[str | Path], png_path: str | Path, title: str = "") -> Path:
    """One panel per metric (``loss``, ``acc``, ``rmse``, ...; :data:`PANELS_PER_ROW` to a row), train
    and validation against the epoch (integer ticks), from the CSV logs of a run and its resumptions
    (in order; later epochs win), under ``title`` (:func:`run_title`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    paths = [csv_paths] if isinstance(csv_paths, (str, Path)) else list(csv_paths)
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
        raise ValueError(f"{', '.join(map(str, paths))}: no epoch-level metrics to plot")
    cols = min(len(series), PANELS_PER_ROW)
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.5 * rows), squeeze=False)
    for ax in axes.flat[len(series):]:
        ax.set_visible(False)
    for ax, (metric, stages) in zip(axes.flat, sorted(series.items())):
        for stage, by_epoch in sorted(stages.items()):
            epochs = sorted(by_epoch)
            ax.plot([e + 1 for e in epochs], [by_epoch[e] for e in epochs], marker="o", label=stage)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
