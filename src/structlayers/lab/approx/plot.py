"""Plot of approximation error against parameter count, with the truncated-SVD frontier."""

from __future__ import annotations

from pathlib import Path

from structlayers.lab.approx.experiment import ApproxResult
from structlayers.lab.approx.targets import gaussian_target, svd_error


def plot_error_vs_params(result: ApproxResult, path: Path) -> None:
    """Structured layer (mean +- std over seeds) against the best rank-r matrices, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = result.config.n
    rows = result.rows()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar([r.params for r in rows], [r.rel_error_mean for r in rows], yerr=[r.rel_error_std for r in rows],
                marker="o", capsize=3, label=f"{result.config.layer} stack ({result.config.shuffle})")
    for r in rows:
        ax.annotate(f"K={r.depth or 1}", (r.params, r.rel_error_mean), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    target = gaussian_target(n, seed=result.config.seeds[0])
    ranks = [r for r in range(1, n + 1)]
    ax.plot([2 * n * r for r in ranks], [svd_error(target, r) for r in ranks], "k--", label="truncated SVD")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("relative Frobenius error")
    ax.set_title(f"Fitting a random {n}x{n} matrix")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
