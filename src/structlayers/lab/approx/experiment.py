"""The ``structlayers approx`` experiment: fit layers to target matrices over several seeds, say
whether every fit converged, and compare with baselines at the same parameter count.

Two ways to choose what is fitted: layers at given stack ``depths`` (each with each shuffle), or,
with ``budgets``, for every layer family the configuration that spends each parameter budget best
(:mod:`structlayers.lab.approx.families`).  Two protocols: ``frobenius`` (the relative Frobenius
error of the layer's weight against a target matrix; :mod:`structlayers.lab.approx.targets`) and
``research-log`` (the output MSE of the 2018 experiment; :mod:`structlayers.lab.approx.protocol`).
"""

from __future__ import annotations

import inspect
import json
import math
import statistics
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from structlayers.base import StructuredLinear
from structlayers.configs import to_dict
from structlayers.lab.approx import protocol as log2018
from structlayers.lab.approx.baselines import (
    DIMENSION_MAX_PARAMS,
    local_dimension,
    random_features_error,
    svd_error,
    svd_params,
    svd_rank_for_budget,
)
from structlayers.lab.approx.families import Candidate, candidates, pick
from structlayers.lab.approx.stats import LEVEL_TEXT, RULE, paired_interval, verdict
from structlayers.lab.approx.targets import Target, is_generated, make_target
from structlayers.registry import LayerSpec, accepted_options
from structlayers.surgery.fit import FitOptions, FitResult, fit_layer, fit_outputs
from structlayers.transforms.shuffle import SHUFFLES
from structlayers.utils.memory import check_allocation
from structlayers.utils.processes import default_workers, unordered_map
from structlayers.utils.report import format_table
from structlayers.utils.timing import time_interleaved

PROTOCOLS = ("frobenius", "research-log")
#: Per protocol: the default target size and seeds (5 paired seeds: the t-interval's verdict needs a few).
PROTOCOL_DEFAULTS = {"frobenius": (64, tuple(range(5))), "research-log": (log2018.SIZE, tuple(range(log2018.REPEATS)))}
#: How baselines are charged: a layer's nominal parameter count, or its local dimension (the rank of
#: the Jacobian of its dense matrix at the fitted point: what its parameters actually buy).
CHARGES = ("nominal", "dimension")
#: The default iteration cap: the embedded default job (``approx --layer acdc --depth 16``) finishes
#: within a minute on 2 cores (its 10 fits in two processes); its fits stop at the cap, so its errors are
#: starred upper bounds.
#: The recorded studies set their own caps (``experiments/approx/run.sh``).
DEFAULT_STEPS = 500


@dataclass
class ApproxConfig:
    """One approximation study.

    ``layers`` are :class:`~structlayers.LayerSpec` s without a depth (or their text forms, one
    string as a comma list: ``"acdc,afdf:cascade=complex"``), each fitted at every one of ``depths``;
    ``shuffle`` may be a comma list (``"random,riffle"``); ``fit`` is how every layer is fitted.
    ``n`` and ``seeds`` default to the protocol's (64 and 5 seeds; 32 and 10 for ``research-log``).
    ``budgets`` switches from fixed ``depths`` to each family's best configuration per budget.
    ``project_start``: besides the random start, fit every layer from its projection onto its family
    (``project_``, where the family has one) and keep the lower error.  ``charge``: what the SVD and
    random-features baselines are given, the layer's nominal parameter count or its local dimension.
    ``legacy_objective`` (``research-log`` with ``cg``): the 2018 objective wrapper, which returns
    the last value and gradient for points within 1e-4 of the last one evaluated.
    ``threads`` is torch's thread count during the fits (tiny problems run fastest on one);
    ``workers`` the processes the fits are spread over (``None``: as many as the available CPUs hold
    at ``threads`` each).  Neither changes a result.
    """

    layers: tuple[LayerSpec, ...] = (LayerSpec("acdc"),)
    n: int | None = None
    #: Stack depths; ``None`` fits the layer itself.
    depths: tuple[int | None, ...] = (None,)
    shuffle: str = "riffle"
    seeds: tuple[int, ...] | None = None
    target: str = "gaussian"
    protocol: str = "frobenius"
    budgets: tuple[int, ...] = ()
    fit: FitOptions = FitOptions(steps=DEFAULT_STEPS)
    timing: bool = True
    threads: int = 1
    workers: int | None = None
    project_start: bool = True
    charge: str = "nominal"
    legacy_objective: bool = False

    def __post_init__(self) -> None:
        texts = self.layers.split(",") if isinstance(self.layers, str) else self.layers
        self.layers = tuple(t if isinstance(t, LayerSpec) else LayerSpec.parse(t) for t in texts if str(t).strip())
        for spec in self.layers:
            if spec.depth is not None:
                raise ValueError(f"layer {str(spec)!r}: give stack depths with --depth, not in the layer")

    def to_dict(self) -> dict[str, Any]:
        """The record's ``config`` mapping: ``layer``, the layers as one comma list, and the fit's
        settings flat (``optimizer``, ``steps``, ...).  ``layer_options`` is empty (records before the
        options were part of each layer kept the options every layer shared there).  ``workers`` only
        when set: it changes no result."""
        settings = {k: v for k, v in to_dict(self).items()
                    if k not in ("layers", "fit") and not (k == "workers" and v is None)}
        return {"layer": ",".join(map(str, self.layers)), **settings, **to_dict(self.fit), "layer_options": {}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApproxConfig:
        """The configuration of a record's ``config`` mapping (:meth:`to_dict`, or an older record's:
        retired settings are dropped, and records before the projection start fitted without it)."""
        shared = data.get("layer_options") or {}
        layers = [LayerSpec.parse(t) for t in str(data.get("layer", "acdc")).split(",") if t.strip()]
        fit = {f.name for f in fields(FitOptions)}
        known = {f.name for f in fields(cls)} - {"layers", "fit"}
        settings = {"project_start": False, **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                                              if k in known}}
        return cls(layers=tuple(s.replace(options={**shared, **s.options}) for s in layers),
                   fit=replace(cls.fit, **{k: v for k, v in data.items() if k in fit}), **settings)

    @property
    def size(self) -> int:
        return self.n if self.n is not None else PROTOCOL_DEFAULTS[self.protocol][0]

    @property
    def seed_list(self) -> tuple[int, ...]:
        return self.seeds if self.seeds is not None else PROTOCOL_DEFAULTS[self.protocol][1]

    @property
    def shuffles(self) -> list[str]:
        return [s.strip() for s in self.shuffle.split(",") if s.strip()]

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; expected one of {PROTOCOLS}")
        unknown = [s for s in self.shuffles if s not in SHUFFLES]
        if unknown or not self.shuffles:
            raise ValueError(f"unknown shuffle(s) {', '.join(unknown) or '(none given)'}; expected some of {SHUFFLES}")
        if not self.layers:
            raise ValueError("no layer given")
        for label, value, least in (("--n", self.size, 2), ("--threads", self.threads, 1)):
            if value < least:
                raise ValueError(f"{label} must be at least {least}, got {value}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.threads > 4096:
            raise ValueError(f"--threads must be at most 4096, got {self.threads}")
        if self.protocol == "research-log" and self.target != "gaussian":
            raise ValueError("--protocol research-log defines its own targets (nn.Linear with bias); "
                             "omit --target")
        if any(b < 1 for b in self.budgets):
            raise ValueError(f"parameter budgets must be positive, got {self.budgets}")
        if self.charge not in CHARGES:
            raise ValueError(f"unknown charge {self.charge!r}; expected one of {CHARGES}")
        if self.legacy_objective and (self.protocol != "research-log" or self.fit.optimizer != "cg"):
            raise ValueError("--legacy-objective reproduces the 2018 fit: it needs --protocol research-log "
                             "--optimizer cg")


@dataclass
class Job:
    """One configuration to fit over the seeds: its layer, and its label in tables."""

    label: str
    spec: LayerSpec
    shuffle: str
    budget: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record's form, the spec flat (``layer``, ``depth``, ``options``)."""
        return {"label": self.label, "layer": self.spec.name, "depth": self.spec.depth, "shuffle": self.shuffle,
                "options": self.spec.options, "budget": self.budget}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        return cls(data["label"], LayerSpec(data["layer"], data["depth"], data["options"]), data["shuffle"],
                   data.get("budget"))


@dataclass
class ApproxRun:
    """One fit: one job, one seed, with the baselines on the same target."""

    job: int
    seed: int
    params: int
    relative_error: float
    output_mse: float
    converged: bool
    grad_norm: float
    steps: int
    seconds: float
    message: str
    svd_rank: int
    svd_error: float
    rf_error: float
    floor_mse: float = math.nan
    #: Which start gave ``relative_error`` (the lower one): ``random`` or ``projection``.
    start: str = "random"
    random_error: float = math.nan
    #: The projection itself (before fitting) and the fit from it; NaN without a projection.
    projection_error: float = math.nan
    from_projection_error: float = math.nan
    #: The local dimension of the fitted layer (the job's first seed; -1 when not measured).
    dimension: int = -1


@dataclass
class ApproxRow:
    """The runs of one job aggregated over seeds.

    ``beats_svd`` judges the paired differences (layer error - SVD error) over seeds by the
    Student-t interval of their mean at :data:`~structlayers.lab.approx.stats.LEVEL`,
    ``diff_low`` .. ``diff_high``: ``yes`` / ``no`` when it excludes 0, ``tie`` when not,
    ``?`` with one seed.  The SVD is charged ``charged`` parameters: the nominal count or the local
    ``dimension``.  ``projection_error`` / ``from_projection_error``: the projection onto the
    family and the fit from it (means; NaN without one); ``rel_error_mean`` is the lower of the
    two starts per seed.  ``forward_us`` is the fitted layer's
    measured forward time (float32, CPU) and ``vs_linear`` its ratio to ``nn.Linear``'s, timed
    interleaved in the same run."""

    layer: str
    config: str
    depth: int | None
    shuffle: str
    budget: int | None
    params: int
    seeds: int
    rel_error_mean: float
    rel_error_std: float
    mse_mean: float
    mse_std: float
    converged: int
    grad_norm_max: float
    steps_median: float
    seconds: float
    svd_rank: int
    svd_params: int
    svd_rel_error: float
    rf_rel_error: float
    diff_low: float
    diff_high: float
    beats_svd: str
    floor_mse: float = math.nan
    reference_mse: float = math.nan
    reference_std: float = math.nan
    forward_us: float = math.nan
    vs_linear: float = math.nan
    dimension: int = -1
    charged: int = 0
    random_error_mean: float = math.nan
    projection_error: float = math.nan
    from_projection_error: float = math.nan
    from_projection: int = 0

    @property
    def all_converged(self) -> bool:
        return self.converged == self.seeds


def _mean_std(values: list[float], population: bool = False) -> tuple[float, float]:
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    if len(values) < 2:
        return statistics.fmean(values), 0.0
    return statistics.fmean(values), (statistics.pstdev if population else statistics.stdev)(values)


def _nan_mean(values: list[float]) -> float:
    return math.nan if any(math.isnan(v) for v in values) else statistics.fmean(values)


@dataclass
class ApproxResult:
    config: ApproxConfig
    jobs: list[Job] = field(default_factory=list)
    runs: list[ApproxRun] = field(default_factory=list)
    timings: dict[int, tuple[float, float]] = field(default_factory=dict)
    target_description: str = ""
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False

    def rows(self) -> list[ApproxRow]:
        out = []
        research_log = self.config.protocol == "research-log"
        for index, job in enumerate(self.jobs):
            runs = [r for r in self.runs if r.job == index]
            if not runs:
                continue
            errs, mses = [r.relative_error for r in runs], [r.output_mse for r in runs]
            err_mean, err_std = _mean_std(errs)
            mse_mean, mse_std = _mean_std(mses, population=research_log)
            diffs = [r.relative_error - r.svd_error for r in runs]
            low, high = (math.nan, math.nan) if research_log else paired_interval(diffs)
            ref = (log2018.reference(job.spec.name, job.spec.depth, job.shuffle)
                   if research_log and self.config.size == log2018.SIZE else None)
            forward_us, vs_linear = self.timings.get(index, (math.nan, math.nan))
            out.append(ApproxRow(
                layer=job.spec.name, config=job.label, depth=job.spec.depth, shuffle=job.shuffle, budget=job.budget,
                params=runs[0].params, seeds=len(runs), rel_error_mean=err_mean, rel_error_std=err_std,
                mse_mean=mse_mean, mse_std=mse_std, converged=sum(r.converged for r in runs),
                grad_norm_max=max(r.grad_norm for r in runs), steps_median=statistics.median(r.steps for r in runs),
                seconds=sum(r.seconds for r in runs), svd_rank=runs[0].svd_rank,
                svd_params=svd_params(runs[0].svd_rank, *self.target_shape),
                svd_rel_error=statistics.fmean(r.svd_error for r in runs),
                rf_rel_error=statistics.fmean(r.rf_error for r in runs), diff_low=low, diff_high=high,
                beats_svd=verdict(low, high), floor_mse=statistics.fmean(r.floor_mse for r in runs),
                reference_mse=ref[0] if ref else math.nan, reference_std=ref[1] if ref else math.nan,
                forward_us=forward_us, vs_linear=vs_linear, dimension=runs[0].dimension,
                charged=runs[0].dimension if self.config.charge == "dimension" else runs[0].params,
                random_error_mean=_nan_mean([r.random_error for r in runs]),
                projection_error=_nan_mean([r.projection_error for r in runs]),
                from_projection_error=_nan_mean([r.from_projection_error for r in runs]),
                from_projection=sum(r.start == "projection" for r in runs),
            ))
        return out

    @property
    def target_shape(self) -> tuple[int, int]:
        n = self.config.size
        if self.config.protocol == "research-log" or is_generated(self.config.target):
            return n, n
        return make_target(self.config.target, n, 0).shape

    def to_text(self) -> str:
        rows = self.rows()
        if self.config.protocol == "research-log":
            table = self._research_log_table(rows)
        else:
            table = self._frobenius_table(rows)
        notes = [self._note()]
        if any(not r.all_converged for r in rows):
            notes.append("* not every seed converged (conv = converged seeds; |g| = largest final gradient norm) "
                         f"within {self.config.fit.steps} steps: its error is an upper bound of what the family can "
                         "reach" + ("" if self.config.protocol == "research-log"
                                    else ", and its verdict against the SVD is about that bound"))
        notes += [f"skipped: {s}" for s in self.skipped]
        if self.interrupted:
            notes.append("interrupted: the table holds the fits finished so far")
        return "\n".join([table, *notes])

    def _frobenius_table(self, rows: list[ApproxRow]) -> str:
        timed = any(not math.isnan(r.forward_us) for r in rows)
        headers = ["layer", "params", "dim", "seeds", "rel. Frobenius error", "conv", "|g|", "steps",
                   "random start", "projection -> fit", "SVD rank", "SVD error", "RF error",
                   f"err - SVD ({LEVEL_TEXT} t)", "beats SVD", "output MSE"]
        if timed:
            headers += ["fwd us", "x Linear"]
        body = []
        for r in rows:
            star = "" if r.all_converged else "*"
            projected = ("-" if math.isnan(r.projection_error)
                         else f"{r.projection_error:.4f} -> {r.from_projection_error:.4f}")
            line = [r.config, r.params, r.dimension if r.dimension >= 0 else "-", r.seeds,
                    f"{r.rel_error_mean:.4f} +- {r.rel_error_std:.4f}{star}", f"{r.converged}/{r.seeds}",
                    f"{r.grad_norm_max:.1e}", f"{r.steps_median:.0f}", f"{r.random_error_mean:.4f}", projected,
                    f"{r.svd_rank} ({r.svd_params})", f"{r.svd_rel_error:.4f}", f"{r.rf_rel_error:.4f}",
                    "-" if math.isnan(r.diff_low) else f"[{r.diff_low:+.4f}, {r.diff_high:+.4f}]", r.beats_svd,
                    f"{r.mse_mean:.2e}"]
            if timed:
                line += [f"{r.forward_us:.1f}", f"{r.vs_linear:.2f}"]
            body.append(line)
        return format_table(headers, body, "lrrrrrrrrrrrrrlr" + ("rr" if timed else ""))

    def _research_log_table(self, rows: list[ApproxRow]) -> str:
        headers = ["layer", "K", "shuffle", "params", "seeds", "MSE (ours)", "conv", "|g|", "steps", "MSE (2018)",
                   "bias-free floor"]
        body = []
        for r in rows:
            star = "" if r.all_converged else "*"
            ref = "-" if math.isnan(r.reference_mse) else f"{r.reference_mse:.4f} +- {r.reference_std:.4f}"
            body.append([r.config, r.depth or 1, r.shuffle, r.params, r.seeds,
                         f"{r.mse_mean:.4f} +- {r.mse_std:.4f}{star}", f"{r.converged}/{r.seeds}",
                         f"{r.grad_norm_max:.1e}", f"{r.steps_median:.0f}", ref, f"{r.floor_mse:.4f}"])
        return format_table(headers, body, "lrlrrrrrrrr")

    def _note(self) -> str:
        c, f = self.config, self.config.fit
        fit = f"{f.optimizer}, at most {f.steps} steps (ftol {f.ftol:g}, gtol {f.gtol:g})"
        if c.protocol == "research-log":
            n = c.size
            fit = (f"the 2018 fit: scipy CG in float32, at most {f.steps} iterations (gtol {f.gtol:g}), through the "
                   f"log's objective wrapper (stale value and gradient within {log2018.STALE_TOLERANCE:g})"
                   if c.legacy_objective else fit)
            reference = ("2018 = the reported values (scipy CG, 1000 iterations, float32, the objective wrapper)"
                         if n == log2018.SIZE else f"no 2018 values (they are for n = {log2018.SIZE})")
            return (f"protocol research-log: nn.Linear({n}, {n}) targets with bias, {log2018.SAMPLES} inputs "
                    "X ~ U(0, 1), no bias in the model, a riffle inside every factor; training MSE, mean +- "
                    f"population std; {fit}; {reference}; floor = the best bias-free linear map (least squares)")
        charged = "params" if c.charge == "nominal" else "the layer's local dimension (dim)"
        return (f"target: {self.target_description}; {fit}"
                + ("; each layer also fitted from its projection (the lower error per seed is kept)"
                   if c.project_start else "")
                + f"; SVD = the best matrix of rank r with r(m+n-r) <= {charged} (dense once that reaches m n); "
                "RF = random features (fixed Gaussian projection, least-squares readout, m k <= the same count); "
                "dim = rank of the Jacobian of the dense matrix w.r.t. the parameters at the fitted point (seed "
                f"{c.seed_list[0]}; measured up to {DIMENSION_MAX_PARAMS} parameters, or for --charge dimension); "
                f"beats SVD: {RULE} of the paired differences over seeds")

    @classmethod
    def from_json(cls, text: str) -> ApproxResult:
        """The result :meth:`to_json` wrote (to re-plot or re-tabulate recorded studies)."""
        data = json.loads(text)
        config = ApproxConfig.from_dict(data["config"])
        jobs = [Job.from_dict(j) for j in data["jobs"]]
        index = {job.label: i for i, job in enumerate(jobs)}
        timings = {index[r["config"]]: (r["forward_us"], r["vs_linear"]) for r in data["rows"]}
        runs = [ApproxRun(**{"random_error": r["relative_error"], **r}) for r in data["runs"]]
        return cls(config, jobs, runs, timings, data["target"], data["skipped"], data["interrupted"])

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": self.config.to_dict(),
                "target": self.target_description,
                "interrupted": self.interrupted,
                "skipped": self.skipped,
                "jobs": [j.to_dict() for j in self.jobs],
                "verdict_rule": RULE,
                "rows": [asdict(r) for r in self.rows()],
                "runs": [asdict(r) for r in self.runs],
            },
            indent=2,
            default=str,
        )


def rederive(path: Path) -> ApproxResult:
    """Rewrite the record at ``path`` with its rows derived again from its runs by the current code
    (verdicts by :data:`~structlayers.lab.approx.stats.RULE`, whatever rule it was recorded with),
    and the table beside it (``.txt``: what ``structlayers approx`` printed) when there is one."""
    result = ApproxResult.from_json(path.read_text())
    path.write_text(result.to_json())
    table = path.with_suffix(".txt")
    if table.exists():
        table.write_text(result.to_text() + "\n")
    return result


def _layer_options(config: ApproxConfig, spec: LayerSpec) -> dict[str, Any]:
    """``spec``'s options with the experiment's defaults: no biases (the targets are linear maps;
    ``research-log``'s model has none either), the dense transform backend at small sizes (faster
    on the fit's few probe rows), and a riffle inside every factor under ``research-log``."""
    options = dict(spec.options)
    accepted = accepted_options(spec.name, options)
    if "bias" in accepted:
        options.setdefault("bias", False)
    if "backend" in accepted:
        options.setdefault("backend", "dense" if config.size <= 256 else "fft")
    if config.protocol == "research-log" and "inner_shuffle" in accepted:
        options.setdefault("inner_shuffle", "riffle")
    return options


def plan(config: ApproxConfig, shape: tuple[int, int]) -> tuple[list[Job], list[str]]:
    """The jobs of ``config`` for targets of ``shape (out, in)``, and the budgets no configuration
    of a family fits in."""
    jobs: list[Job] = []
    skipped: list[str] = []
    n_out, n_in = shape
    for spec in config.layers:
        if config.budgets:
            for shuffle in config.shuffles:
                options = candidates(spec.replace(options=_layer_options(config, spec)), n_in, n_out,
                                     shuffle, label=str(spec))
                for budget in config.budgets:
                    chosen: Candidate | None = pick(options, budget, max(n_in, n_out))
                    if chosen is None:
                        skipped.append(f"{spec}: no configuration within {budget} parameters")
                        continue
                    shuffle_label = shuffle if chosen.spec.depth else "-"
                    if any(j.label == chosen.label for j in jobs):
                        continue  # two budgets can pick the same configuration
                    jobs.append(Job(chosen.label, chosen.spec, shuffle_label, budget))
            continue
        depths = [d or 1 for d in config.depths] if config.protocol == "research-log" else list(config.depths)
        for depth in depths:
            stacked = depth is not None and (depth > 1 or config.protocol == "research-log")
            for shuffle in config.shuffles if stacked else ["-"]:
                options = _layer_options(config, spec)
                if depth is not None:
                    options.setdefault("shuffle", shuffle if stacked else config.shuffles[0])
                label = str(spec) + (f" K={depth}" if depth is not None else "") + (f" {shuffle}" if stacked else "")
                jobs.append(Job(label, spec.replace(depth=depth, options=options), shuffle))
    return jobs, skipped


def build_layer(job: Job, shape: tuple[int, int], seed: int, research_log: bool = False) -> StructuredLinear:
    """The layer of ``job`` for a target of ``shape (out, in)``, initialised from ``seed`` (a stack's
    random shuffles too), in float64."""
    torch.manual_seed(seed)
    seeded = job.spec.depth is not None and "seed" not in job.spec.options
    layer = job.spec.build(shape[1], shape[0], **({"seed": seed} if seeded else {})).double()
    if research_log:
        log2018.use_2018_riffle(layer)
    return layer


@contextmanager
def _torch_threads(threads: int):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _time_layers(layers: dict[int, StructuredLinear], shape: tuple[int, int], rows: int = 256
                 ) -> dict[int, tuple[float, float]]:
    """``{job: (forward microseconds, time / nn.Linear's)}`` on ``rows`` vectors, float32 on CPU,
    all timed interleaved (per round, the ratio to ``nn.Linear`` of the same round)."""
    if not layers:
        return {}
    linear = nn.Linear(shape[1], shape[0])
    x = torch.randn(rows, shape[1])
    modules = [linear, *[layer.float().eval() for layer in layers.values()]]

    def call(module: nn.Module) -> Callable[[], object]:
        def forward() -> object:
            with torch.no_grad():
                return module(x)
        return forward

    timings = time_interleaved([call(m) for m in modules], torch.device("cpu"), warmup=3, repeats=25, min_time=5e-3)
    return {job: (1e6 * t.median, t.paired_ratio(timings[0])) for job, t in zip(layers, timings[1:])}


def _fit(config: ApproxConfig, layer: StructuredLinear, target: Target | log2018.Task,
         tick: Callable[[int, float], None] | None) -> FitResult:
    if isinstance(target, log2018.Task):
        if config.legacy_objective:
            return log2018.fit_legacy(layer, target, config.fit, tick)
        return fit_outputs(layer, target.x, target.y, fit=config.fit, callback=tick)
    return fit_layer(layer, target.weight, fit=config.fit, callback=tick)


def _projected(layer: StructuredLinear, target: Target) -> float | None:
    """Set ``layer`` to its projection onto its family (the closed-form part only, where the
    projection refines by optimisation: the fit does that) and return its error; None when the
    family has no projection for this shape."""
    try:
        if "refine_steps" in inspect.signature(layer.project_).parameters:
            layer.project_(target.weight, None, refine_steps=0)
        else:
            layer.project_(target.weight, None)
    except NotImplementedError:
        return None
    weight, _ = layer.to_dense()
    return float(torch.linalg.norm(weight.double() - target.weight) / torch.linalg.norm(target.weight))


@dataclass
class _Fitted:
    """One (job, seed) fit as a worker hands it back: the fitted layer, the kept fit, and both starts
    (``projection``: the projection's error and the error of the fit from it, where there is one)."""

    index: int
    seed: int
    layer: StructuredLinear
    fit: FitResult
    start: str
    random_error: float
    projection: tuple[float, float] | None = None


@dataclass
class _Fitter:
    """The fits of one study, (job index, seed) by (job index, seed): the targets it has made, the
    planned ``jobs`` and the target ``shape``.  Picklable: each worker process holds a copy."""

    config: ApproxConfig
    jobs: list[Job] = field(default_factory=list)
    shape: tuple[int, int] = (0, 0)
    targets: dict[tuple[int, str], Target | log2018.Task] = field(default_factory=dict)

    @property
    def research_log(self) -> bool:
        return self.config.protocol == "research-log"

    def target(self, seed: int, shuffle: str) -> Target | log2018.Task:
        key = (seed, shuffle if self.research_log else "")
        if key not in self.targets:
            self.targets[key] = (log2018.make_task(seed, shuffle, self.config.size) if self.research_log
                                 else make_target(self.config.target, self.config.size, seed))
        return self.targets[key]

    def __call__(self, key: tuple[int, int], tick: Callable[[int, float], None] | None = None) -> _Fitted:
        index, seed = key
        job = self.jobs[index]
        target = self.target(seed, job.shuffle)
        layer = build_layer(job, self.shape, seed, self.research_log)
        fit = _fit(self.config, layer, target, tick)
        fitted = _Fitted(index, seed, layer, fit, "random", fit.relative_error)
        if self.config.project_start and isinstance(target, Target):
            candidate = build_layer(job, self.shape, seed)
            projected = _projected(candidate, target)
            if projected is not None:
                from_projection = _fit(self.config, candidate, target, tick)
                fitted.projection = (projected, from_projection.relative_error)
                if from_projection.relative_error < fit.relative_error:
                    fitted.start, fitted.layer, fitted.fit = "projection", candidate, from_projection
        return fitted


def run_approx(
    config: ApproxConfig, progress: bool = True, on_run: Callable[[ApproxRun], None] | None = None
) -> ApproxResult:
    """Fit every (job, seed), in ``config.workers`` processes; Ctrl-C stops early and returns the runs
    finished so far.  The runs, their order and the local dimensions do not depend on the workers."""
    config.validate()
    fitter = _Fitter(config)
    research_log, seeds = fitter.research_log, config.seed_list
    if research_log or is_generated(config.target):
        # The float64 target, the fitted layer's dense form and the fit's gradients: a few n x n buffers.
        check_allocation(64 * config.size**2, f"approx --n {config.size}")
    first = fitter.target(seeds[0], config.shuffles[0])
    shape = (config.size, config.size) if research_log else first.shape
    jobs, skipped = plan(config, shape)
    if not jobs:
        raise ValueError(f"no configuration fits the parameter budget(s) {','.join(map(str, config.budgets))} "
                         f"for {shape[0]}x{shape[1]} targets ({'; '.join(skipped)}); give larger budgets")
    for job in jobs:
        build_layer(job, shape, 0)  # validate every option before any long work
    fitter.jobs, fitter.shape = jobs, shape
    result = ApproxResult(config, jobs, skipped=skipped,
                          target_description="" if research_log else first.description.replace(
                              f", seed {seeds[0]}", f", seeds {','.join(map(str, seeds))}"))
    keys = [(index, seed) for index in range(len(jobs)) for seed in seeds]
    workers = config.workers or default_workers(len(keys), config.threads)
    fitted: dict[int, StructuredLinear] = {}
    dimensions: dict[int, int] = {}
    finished: dict[tuple[int, int], _Fitted] = {}
    bar = tqdm(total=len(keys), disable=not progress, unit="fit", dynamic_ncols=True)

    def tick(step: int, loss: float) -> None:
        if step % 200 == 0:
            bar.set_postfix(step=step, loss=f"{loss:.3e}")

    def serial(key: tuple[int, int]) -> _Fitted:
        bar.set_description(f"{jobs[key[0]].label} seed {key[1]}")
        return fitter(key, tick)

    def record(done: _Fitted) -> None:
        """The run of ``done`` into the result; a job's first recorded seed (its first seed, unless
        Ctrl-C came between) gives its timed layer and local dimension."""
        if done.index not in fitted:
            fitted[done.index] = done.layer
            if not research_log and (config.charge == "dimension" or done.layer.params() <= DIMENSION_MAX_PARAMS):
                dimensions[done.index] = local_dimension(done.layer)
        run = _record(done.index, done.seed, done.layer, done.fit, fitter.target(done.seed, jobs[done.index].shuffle),
                      dimensions.get(done.index, -1), config.charge)
        run.start, run.random_error = done.start, done.random_error
        if done.projection is not None:
            run.projection_error, run.from_projection_error = done.projection
        result.runs.append(run)
        if on_run:
            on_run(run)

    recorded = 0
    try:
        with _torch_threads(config.threads), unordered_map(serial if workers == 1 else fitter, keys, workers,
                                                            config.threads) as fits:
            if workers > 1:
                bar.set_description(f"{len(keys)} fits in {workers} processes")
            for done in fits:
                finished[(done.index, done.seed)] = done
                bar.update(1)
                while recorded < len(keys) and keys[recorded] in finished:
                    record(finished.pop(keys[recorded]))
                    recorded += 1
    except KeyboardInterrupt:
        result.interrupted = True
        for key in keys:  # finished after one still running: kept too
            if key in finished:
                record(finished.pop(key))
    finally:
        bar.close()
    if config.timing and not result.interrupted:
        with _torch_threads(config.threads):
            result.timings = _time_layers(fitted, shape)
    return result


def _record(index: int, seed: int, layer: StructuredLinear, fit: FitResult, target: Target | log2018.Task,
            dimension: int, charge: str) -> ApproxRun:
    """One run, its baselines charged the layer's nominal count or its local ``dimension``."""
    params = layer.params()
    if isinstance(target, log2018.Task):
        rank, svd, rf, floor = 0, math.nan, math.nan, target.floor_mse()
    else:
        m, n = target.shape
        charged = dimension if charge == "dimension" else params
        rank = svd_rank_for_budget(charged, m, n)
        svd, rf = svd_error(target.weight, rank), random_features_error(target.weight, charged, seed)[1]
        floor = math.nan
    return ApproxRun(index, seed, params, fit.relative_error, fit.output_mse, fit.converged, fit.grad_norm, fit.steps,
                     fit.seconds, fit.message, rank, svd, rf, floor, dimension=dimension)
