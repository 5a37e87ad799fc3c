"""Plots of an approximation study: error against parameters with the SVD and random-features
baselines, error against measured forward time, and the research-log table against the 2018 values.
Hollow markers are configurations where not every seed converged; each series has its own colour
and marker shape."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

from structlayers.lab.approx.baselines import random_features_error, svd_error, svd_params
from structlayers.lab.approx.experiment import ApproxResult, ApproxRow
from structlayers.lab.approx.targets import make_target


def _series(rows: list[ApproxRow], by_family: bool) -> dict[str, list[ApproxRow]]:
    groups: dict[str, list[ApproxRow]] = defaultdict(list)
    for r in rows:
        key = r.config.split(" ")[0] if by_family else f"{r.config.split(' ')[0]} ({r.shuffle})"
        groups[key].append(r)
    return {k: sorted(v, key=lambda r: r.params) for k, v in groups.items()}


def _label(key: str, series: list[ApproxRow]) -> str:
    """``key`` with the stack depths its series spans: ``"acdc (random), K = 2-32"``, ``"acdc, K = 1"``."""
    ks = sorted({int(m[1]) for r in series if (m := re.search(r"\bK=(\d+)", r.config))})
    if not ks:
        return key
    return f"{key.removesuffix(' (-)')}, K = {ks[0]}" + (f"-{ks[-1]}" if len(ks) > 1 else "")


#: Marker shapes cycled with the colours, so that a dozen families stay distinguishable.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")


def _style(index: int) -> dict[str, object]:
    """Colour and marker of series ``index``: tab10's colours, then tab20's lighter ones."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors + matplotlib.colormaps["tab20"].colors[1::2]
    return {"color": palette[index % len(palette)], "marker": MARKERS[index % len(MARKERS)]}


def _points(ax, xs: list[float], rows: list[ApproxRow], label: str, style: dict[str, object],
            errorbars: bool = True) -> None:
    ys = [r.rel_error_mean for r in rows]
    ax.errorbar(xs, ys, yerr=[r.rel_error_std for r in rows] if errorbars else None, capsize=2, label=label, lw=1.2,
                ms=5, **style)
    for x, y, r in zip(xs, ys, rows):
        if not r.all_converged:
            ax.plot([x], [y], linestyle="none", marker=style["marker"], mfc="white", mec=style["color"], ms=7,
                    zorder=3)


def _baselines(ax, result: ApproxResult, min_params: int, max_params: int) -> None:
    target = make_target(result.config.target, result.config.size, result.config.seed_list[0]).weight
    m, n = target.shape
    ranks = range(0, min(m, n) + 1)
    ax.plot([max(svd_params(r, m, n), 1) for r in ranks], [svd_error(target, r) for r in ranks], "k--", lw=1,
            label="truncated SVD, r(m+n-r) params")
    ks = range(1, n + 1)
    ax.plot([m * k for k in ks], [random_features_error(target, m * k)[1] for k in ks], ":", color="grey", lw=1,
            label="random features, m k params")
    ax.set_xscale("log")
    ax.set_xlim(min_params / 1.5, max_params * 1.5)


def plot_result(result: ApproxResult, path: Path | str) -> None:
    """Save the study's figure to ``path`` (PNG or SVG by extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows()
    config = result.config
    if config.protocol == "research-log":
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for key, series in _series(rows, by_family=False).items():
            depths = [r.depth or 1 for r in series]
            line = ax.errorbar(depths, [r.mse_mean for r in series], yerr=[r.mse_std for r in series], marker="o",
                               capsize=2, label=f"{key}, ours")
            refs = [(d, r.reference_mse) for d, r in zip(depths, series) if not math.isnan(r.reference_mse)]
            if refs:
                ax.plot(*zip(*refs), "s--", color=line[0].get_color(), alpha=0.6, label=f"{key}, 2018")
        ax.set(xscale="log", xlabel="factors K", ylabel="training MSE",
               title="nn.Linear(32, 32) targets, X ~ U(0, 1), 100 samples")
        ax.set_xticks(sorted({r.depth or 1 for r in rows}), [str(d) for d in sorted({r.depth or 1 for r in rows})])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    else:
        by_family = bool(config.budgets)
        groups = _series(rows, by_family)
        timed = any(not math.isnan(r.forward_us) for r in rows)
        fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(13 if timed else 7, 5), squeeze=False)
        ax = axes[0][0]
        styles = {key: _style(i) for i, key in enumerate(groups)}
        for key, series in groups.items():
            _points(ax, [r.params for r in series], series, _label(key, series), styles[key])
        _baselines(ax, result, min(r.params for r in rows), max(r.params for r in rows))
        ax.set(xlabel="parameters", ylabel="relative Frobenius error",
               title=f"{result.target_description}: error vs parameters")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        if timed:
            ax = axes[0][1]
            for key, series in groups.items():
                _points(ax, [r.forward_us for r in series], series, key, styles[key], errorbars=False)
            ax.set(xscale="log", xlabel="measured forward time, us (float32 CPU, 256 rows; lines in parameter order)",
                   ylabel="relative Frobenius error", title="error vs measured time")
            ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
