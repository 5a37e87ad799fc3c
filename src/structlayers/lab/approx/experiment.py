"""The ``structlayers approx`` experiment: fit layers of several depths to random Gaussian targets
over several seeds, and compare with the truncated SVD at the same parameter budget."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from structlayers.base import StructuredLinear
from structlayers.lab.approx.targets import gaussian_target, svd_error
from structlayers.memory import check_allocation
from structlayers.registry import accepted_options, create
from structlayers.report import format_table
from structlayers.surgery.fit import fit_layer


@dataclass
class ApproxConfig:
    """One approximation study: a layer at each depth, fitted for each seed."""

    layer: str = "acdc"
    n: int = 64
    #: Stack depths; ``None`` fits the layer itself.
    depths: tuple[int | None, ...] = (None,)
    shuffle: str = "riffle"
    seeds: tuple[int, ...] = (0, 1, 2)
    optimizer: str = "adam"
    steps: int = 1000
    lr: float | None = None
    layer_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ApproxRun:
    """One fit: one depth, one seed."""

    depth: int | None
    seed: int
    params: int
    relative_error: float
    output_mse: float
    seconds: float


@dataclass
class ApproxRow:
    """Runs of one depth aggregated over seeds, with the SVD baseline at the same budget."""

    layer: str
    depth: int | None
    shuffle: str
    params: int
    seeds: int
    rel_error_mean: float
    rel_error_std: float
    mse_mean: float
    mse_std: float
    svd_rank: int
    svd_rel_error: float
    seconds: float


@dataclass
class ApproxResult:
    config: ApproxConfig
    runs: list[ApproxRun] = field(default_factory=list)
    interrupted: bool = False

    def rows(self) -> list[ApproxRow]:
        out = []
        for depth in dict.fromkeys(r.depth for r in self.runs):
            runs = [r for r in self.runs if r.depth == depth]
            errs, mses = [r.relative_error for r in runs], [r.output_mse for r in runs]
            rank = svd_rank_for_budget(runs[0].params, self.config.n)
            svd = statistics.fmean(svd_error(gaussian_target(self.config.n, seed=r.seed), rank) for r in runs)
            out.append(
                ApproxRow(
                    layer=self.config.layer,
                    depth=depth,
                    shuffle=self.config.shuffle if depth is not None and depth > 1 else "-",
                    params=runs[0].params,
                    seeds=len(runs),
                    rel_error_mean=statistics.fmean(errs),
                    rel_error_std=statistics.stdev(errs) if len(errs) > 1 else 0.0,
                    mse_mean=statistics.fmean(mses),
                    mse_std=statistics.stdev(mses) if len(mses) > 1 else 0.0,
                    svd_rank=rank,
                    svd_rel_error=svd,
                    seconds=sum(r.seconds for r in runs),
                )
            )
        return out

    def to_text(self) -> str:
        rows = [
            (
                r.layer, "-" if r.depth is None else r.depth, r.shuffle, r.params, r.seeds,
                f"{r.rel_error_mean:.4f} +- {r.rel_error_std:.4f}",
                f"{r.mse_mean:.4f} +- {r.mse_std:.4f}",
                r.svd_rank, f"{r.svd_rel_error:.4f}",
                "yes" if r.rel_error_mean < r.svd_rel_error else "no",
                f"{r.seconds:.1f}",
            )
            for r in self.rows()
        ]
        headers = ("layer", "depth", "shuffle", "params", "seeds", "rel. Frobenius error", "output MSE",
                   "SVD rank", "SVD error", "beats SVD", "time (s)")
        table = format_table(headers, rows, "lrlrrrrrrlr")
        note = f"\ntarget: random Gaussian {self.config.n}x{self.config.n} matrices, N(0, 1/n); "
        note += (f"{self.config.optimizer}, {self.config.steps} steps; "
                 "SVD = best low-rank matrix with at most as many parameters")
        if self.interrupted:
            note += "\ninterrupted: the table holds the fits finished so far"
        return table + note

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": asdict(self.config),
                "interrupted": self.interrupted,
                "rows": [asdict(r) for r in self.rows()],
                "runs": [asdict(r) for r in self.runs],
            },
            indent=2,
        )


def svd_rank_for_budget(params: int, n: int) -> int:
    """The largest rank whose factors ``(n x r) (r x n)`` fit in ``params`` numbers."""
    return min(n, params // (2 * n))


def build_layer(config: ApproxConfig, depth: int | None, seed: int) -> StructuredLinear:
    """The layer fitted at ``depth`` (``None``: the layer itself; else a stack of ``depth``
    factors, built by :func:`structlayers.create`)."""
    torch.manual_seed(seed)
    layer_options = dict(config.layer_options)
    accepted = accepted_options(config.layer, layer_options)
    if "bias" in accepted:
        # The targets are linear maps; per-factor biases would only spend parameter budget.
        layer_options.setdefault("bias", False)
    if "backend" in accepted:
        # The fit evaluates the layer on n + 1 probe vectors; at these sizes a DCT as a matmul is
        # faster than the FFT's many small kernels.
        layer_options.setdefault("backend", "dense" if config.n <= 256 else "fft")
    if depth is not None:
        layer_options.setdefault("shuffle", config.shuffle)
        layer_options.setdefault("seed", seed)
    return create(config.layer, config.n, config.n, depth=depth, **layer_options)


def run_approx(
    config: ApproxConfig, progress: bool = True, on_run: Callable[[ApproxRun], None] | None = None
) -> ApproxResult:
    """Fit every (depth, seed); Ctrl-C stops early and returns the runs finished so far."""
    # The float64 target, the fitted layer's dense form and the fit's gradients: a few n x n buffers.
    check_allocation(64 * config.n**2, f"approx --n {config.n}")
    for depth in config.depths:
        build_layer(config, depth, 0)  # validate every option before any long work
    result = ApproxResult(config)
    jobs = [(d, s) for d in config.depths for s in config.seeds]
    bar = tqdm(total=len(jobs) * config.steps, disable=not progress, unit="step", dynamic_ncols=True)
    try:
        for depth, seed in jobs:
            layer = build_layer(config, depth, seed).double()
            target = gaussian_target(config.n, seed=seed)
            bar.set_description(f"{config.layer} depth {depth} seed {seed}")

            def tick(step: int, loss: float) -> None:
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.4f}")

            start = time.perf_counter()
            fit = fit_layer(layer, target, steps=config.steps, optimizer=config.optimizer, lr=config.lr, callback=tick)
            run = ApproxRun(depth, seed, layer.params(), fit.relative_error, fit.output_mse,
                            time.perf_counter() - start)
            result.runs.append(run)
            if on_run:
                on_run(run)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
    return result
