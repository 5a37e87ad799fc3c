"""``structlayers bench``: every registered layer against ``nn.Linear`` of the same shape, timed in
one process, interleaved (one call of each per round, order rotated), after warm-up, with repeats;
plus the roofline bound of each layer and the speed of its :func:`~structlayers.collapse` form."""

from __future__ import annotations

import inspect
import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from structlayers.base import dense_linear
from structlayers.collapse import collapse
from structlayers.configs import to_dict
from structlayers.lab.bench.allocator import keep_freed_memory
from structlayers.lab.bench.machine import Machine, bound_seconds, bytes_moved, cpu_name, measure_machine
from structlayers.registry import LayerSpec, accepted_options, get
from structlayers.utils.costs import measured_cost
from structlayers.utils.memory import check_allocation
from structlayers.utils.report import format_table
from structlayers.utils.timing import Timing, time_interleaved

#: Layers with options that let them run on any square size (``blockdiag`` keeps its 4 groups;
#: ``monarch`` / ``kronecker`` take ~sqrt(N) blocks, ``butterfly`` pads to a power of two).
DEFAULT_LAYERS = ("acdc", "afdf", "stack", "monarch", "butterfly", "kronecker", "circulant", "toeplitz",
                  "lowrank_diag", "blockdiag", "lowrank", "dense")

#: ``keep``: :func:`~structlayers.lab.bench.allocator.keep_freed_memory` before timing (CPU);
#: ``system``: leave malloc as it is.
ALLOCATORS = ("keep", "system")


@dataclass
class BenchConfig:
    """What ``structlayers bench`` measures.

    ``layers`` are :class:`~structlayers.LayerSpec` s (or their text forms: ``"acdc"``,
    ``"monarch:nblocks=4"``), each named in the rows by its text form; a ``stack`` given without a
    depth has ``depth`` factors, and ``backend`` and ``seed`` go to every layer that takes them
    (:meth:`built`)."""

    layers: Sequence[LayerSpec] = tuple(map(LayerSpec, DEFAULT_LAYERS))
    sizes: Sequence[int] = (256, 1024, 4096)
    batches: Sequence[int] = (128,)
    device: str = "cpu"
    dtype: str = "float32"
    depth: int = 16
    backend: str = "fft"
    repeats: int = 10
    large_repeats: int = 5
    large_size: int = 2048
    warmup: int = 2
    min_time: float = 0.005
    backward: bool = True
    collapse: bool = True
    collapse_repeats: int = 30
    collapse_min_time: float = 0.02
    allocator: str = "keep"
    compile: bool = False
    seed: int = 0
    bandwidth_mb: int = 256
    gemm_size: int = 2048

    def __post_init__(self) -> None:
        self.layers = tuple(t if isinstance(t, LayerSpec) else LayerSpec.parse(t) for t in self.layers)

    def repeats_for(self, size: int) -> int:
        return self.large_repeats if size >= self.large_size else self.repeats

    @property
    def names(self) -> list[str]:
        """The layers as the rows name them (their text forms)."""
        return [str(spec) for spec in self.layers]

    def built(self, spec: LayerSpec) -> LayerSpec:
        """``spec`` as the bench builds it: a ``stack`` without a depth of :attr:`depth` factors (of
        its default factor), :attr:`backend` and :attr:`seed` where the layer takes them and the
        spec does not set them."""
        depth = self.depth if spec.name == "stack" and spec.depth is None else spec.depth
        given = {"backend": self.backend, "seed": self.seed}
        accepted = accepted_options(spec.name, spec.options)
        return spec.replace(depth=depth, options={**{k: v for k, v in given.items() if k in accepted}, **spec.options})

    def to_dict(self) -> dict[str, Any]:
        """The record's ``config`` mapping, the layers as their text forms."""
        return {**to_dict(self), "layers": self.names}


@dataclass
class BenchRow:
    """One layer at one (N, batch) in one mode (``fwd`` or ``fwd+bwd``); times in milliseconds.

    ``speedup`` is the median over rounds of nn.Linear's time over the layer's time in the same
    round (not the ratio of the medians), so load that drifts between rounds cancels;
    ``samples`` are the per-round seconds it was computed from."""

    layer: str
    size: int
    batch: int
    mode: str
    ms: float
    iqr: float
    linear_ms: float
    speedup: float
    megabytes: float
    bound_ms: float
    collapsed: str = ""
    collapsed_ms: float = float("nan")
    collapse_ratio: float = float("nan")
    samples: tuple[float, ...] = ()

    def paired_ratio(self, other: BenchRow) -> float:
        """Median over the rounds of this row's time over ``other``'s (rows timed in the same rounds)."""
        return Timing(self.samples).paired_ratio(Timing(other.samples))

    @property
    def x_bound(self) -> float:
        return self.ms / self.bound_ms if self.bound_ms > 0 else float("nan")


@dataclass
class BenchResult:
    config: BenchConfig
    machine: Machine
    rows: list[BenchRow] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    def find(self, layer: str, size: int, mode: str, batch: int | None = None) -> BenchRow | None:
        for r in self.rows:
            if r.layer == layer and r.size == size and r.mode == mode and (batch is None or r.batch == batch):
                return r
        return None

    def to_text(self) -> str:
        m = self.machine
        head = (
            f"device: {m.device}; memory bandwidth {m.bandwidth / 1e9:.1f} GB/s (copy); "
            f"GEMM {m.matmul_flops / 1e9:.0f} GFLOP/s; dtype {self.config.dtype}"
        )
        rows = [
            (r.layer, r.size, r.batch, r.mode, f"{r.ms:.3f}", f"{100 * r.iqr:.0f}%", f"{r.linear_ms:.3f}",
             f"{r.speedup:.2f}x", f"{r.megabytes:.2f}", f"{r.bound_ms:.3f}", f"{r.x_bound:.1f}",
             r.collapsed or "-", "-" if r.collapsed == "" else f"{r.collapse_ratio:.2f}")
            for r in self.rows
        ]
        table = format_table(
            ("layer", "N", "batch", "mode", "ms", "IQR", "linear ms", "vs linear", "MB moved", "bound ms",
             "x bound", "collapse", "coll/best"),
            rows,
            "lrrlrrrrrrrlr",
        )
        return "\n".join([head, table, "", *self.target_lines()])

    def target_lines(self) -> list[str]:
        """The issue's speed targets, checked on the rows this run measured."""
        out: list[str] = []

        def check(label: str, value: float | None, ok: Callable[[float], bool], fmt: str) -> None:
            if value is not None:
                out.append(f"[{'met' if ok(value) else 'NOT met'}] {label}: {fmt.format(value)}")

        for size, mode, need in ((4096, "fwd", 10.0), (4096, "fwd+bwd", 6.0), (1024, "fwd", 2.0)):
            r = self.find("acdc", size, mode)
            if r is not None:
                check(f"acdc N={size} {mode} vs nn.Linear >= {need:g}x", r.speedup, lambda v, n=need: v >= n, "{:.2f}x")
        for size in self.config.sizes:
            stack, single = self.find("stack", size, "fwd"), self.find("acdc", size, "fwd")
            if stack is not None and single is not None:
                value = stack.paired_ratio(single) / self.config.depth
                label = f"stack depth {self.config.depth} N={size} fwd / ({self.config.depth} x acdc)"
                if size == 4096:  # the target's size; elsewhere the ratio is reported, not judged
                    check(f"{label} <= 1.10", value, lambda v: v <= 1.10, "{:.2f}")
                else:
                    out.append(f"[info] {label}: {value:.2f}")
            afdf = self.find("afdf", size, "fwd")
            if afdf is not None and single is not None:
                check(f"afdf / acdc N={size} fwd <= 2", afdf.paired_ratio(single), lambda v: v <= 2.0, "{:.2f}")
        ratios = [r.collapse_ratio for r in self.rows if r.collapsed]
        if ratios:
            worst = max(ratios)
            check("collapsed form / faster form <= 1.05 (worst layer)", worst, lambda v: v <= 1.05, "{:.2f}")
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": self.config.to_dict(),
                "machine": asdict(self.machine),
                "environment": self.environment,
                "rows": [{**asdict(r), "x_bound": r.x_bound} for r in self.rows],
                "targets": self.target_lines(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> BenchResult:
        """The result :meth:`to_json` wrote, to re-plot or re-tabulate a recorded run."""
        data = json.loads(text)
        known = {f.name for f in fields(BenchConfig)}  # older records may carry retired settings
        config = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["config"].items()
                                if k in known})
        environment = data.get("environment", {})
        machine = Machine(**data["machine"])
        if machine.device.startswith("cpu") and "threads" in environment:  # older records said "1 threads"
            machine = replace(machine, device=cpu_name(environment["threads"]))
        names = {f.name for f in fields(BenchRow)}
        rows = [BenchRow(**{k: tuple(v) if k == "samples" else v for k, v in r.items() if k in names})
                for r in data["rows"]]
        return cls(config, machine, rows, environment)

    def plot(self, path: str) -> None:
        """Speed-up over ``nn.Linear`` against N, one line per layer, forward and forward+backward."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        modes = [m for m in ("fwd", "fwd+bwd") if any(r.mode == m for r in self.rows)]
        fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
        for ax, mode in zip(axes[0], modes):
            for batch in self.config.batches:
                for layer in self.config.names:
                    pts = sorted((r.size, r.speedup) for r in self.rows if r.layer == layer and r.mode == mode
                                 and r.batch == batch)
                    if pts:
                        suffix = f" (batch {batch})" if len(self.config.batches) > 1 else ""
                        ax.plot(*zip(*pts), marker="o", label=bench_label(layer, self.config) + suffix)
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set(xscale="log", yscale="log", xlabel="N", ylabel="speed-up over nn.Linear (x)",
                   title=f"{mode}, {self.machine.device}, {self.config.dtype}")
            ax.minorticks_off()
            ax.set_xticks(list(self.config.sizes), [str(s) for s in self.config.sizes])
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def bench_label(name: str, config: BenchConfig) -> str:
    """Layer ``name`` as the bench built it, for legends: ``"stack (16 x acdc)"`` names the depth and factor."""
    if name != "stack":
        return name
    factor = inspect.signature(get("stack")).parameters["factor"].default
    return f"stack ({config.depth} x {factor})"


def build_bench_layer(spec: LayerSpec, size: int, config: BenchConfig) -> nn.Module:
    """Layer ``spec`` at ``size`` x ``size`` as the bench builds it (:meth:`BenchConfig.built`)."""
    return config.built(spec).build(size, size)


def _step(module: nn.Module, x: Tensor, backward: bool) -> Callable[[], object]:
    if not backward:
        def forward() -> object:
            with torch.no_grad():
                return module(x)
        return forward
    grad = torch.randn(x.shape[0], module.out_features, device=x.device, dtype=x.dtype)
    leaf = x.detach().clone().requires_grad_(True)

    def forward_backward() -> object:
        module.zero_grad(set_to_none=True)
        leaf.grad = None
        module(leaf).backward(grad)
        return None

    return forward_backward


def _collapse_ratios(
    layers: dict[str, nn.Module], x: Tensor, config: BenchConfig, device: torch.device
) -> dict[str, tuple[str, float, float]]:
    """``{layer: (chosen form, collapsed ms, collapsed / faster form)}``.  Per layer, its two forms
    (structured, and :func:`~structlayers.collapse.dense_linear` of its exact weight) and the model
    :func:`~structlayers.collapse.collapse` made of it are timed together, interleaved, over
    ``collapse_repeats`` rounds of at least ``collapse_min_time`` seconds per form, each turn
    recording its fastest call; the ratio is the median over rounds of the collapsed time over the
    faster form's time in the same round.  A layer at a time, so the three timings of a round are
    milliseconds apart and share the machine's load."""
    out: dict[str, tuple[str, float, float]] = {}
    for name, layer in layers.items():
        # The layer itself as the model: no container around it adds Python overhead to one form only.
        model, report = collapse(layer, batch_shape=(x.shape[0],), cost=measured_cost)
        forms = [layer, dense_linear(layer), model]
        structured, dense, collapsed = time_interleaved(
            [_step(m, x, False) for m in forms], device, warmup=config.warmup, repeats=config.collapse_repeats,
            min_time=config.collapse_min_time, per_turn="min")
        faster = structured if structured.median <= dense.median else dense
        out[name] = (report.choices[0].chosen, 1e3 * collapsed.median, collapsed.paired_ratio(faster))
    return out


def run_bench(config: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Measure the grid of ``config``; every (N, batch, mode) is one interleaved timing round."""
    if config.allocator not in ALLOCATORS:
        raise ValueError(f"unknown allocator setting {config.allocator!r}; expected one of {ALLOCATORS}")
    try:
        device = torch.device(config.device)
    except RuntimeError:
        raise ValueError(f"unknown device {config.device!r}; expected cpu, cuda or cuda:K") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {config.device!r}: the benchmark runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda given but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {config.device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    element = torch.empty((), dtype=getattr(torch, config.dtype)).element_size()
    for size in config.sizes:
        # nn.Linear's weight and gradient, its dense form for collapse, and the batches.
        check_allocation(element * (4 * size * size + 8 * max(config.batches) * size), f"bench size N={size}", device)
    # The machine probes: two buffers of bandwidth_mb MiB, three gemm_size^2 matrices.
    check_allocation(2 * config.bandwidth_mb * 2**20, f"the bandwidth probe of {config.bandwidth_mb} MiB", device)
    check_allocation(3 * element * config.gemm_size**2, f"the GEMM probe of size {config.gemm_size}", device)
    allocator = keep_freed_memory() if config.allocator == "keep" and device.type == "cpu" else None
    dtype = getattr(torch, config.dtype)
    torch.manual_seed(config.seed)
    machine = measure_machine(device, dtype, config.bandwidth_mb, config.gemm_size)
    result = BenchResult(config, machine, environment={
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "allocator": allocator.describe() if allocator is not None else "system malloc (unchanged)",
    })
    for size in config.sizes:
        for batch in config.batches:
            linear = nn.Linear(size, size, device=device, dtype=dtype)
            layers = {str(s): build_bench_layer(s, size, config).to(device, dtype) for s in config.layers}
            x = torch.randn(batch, size, device=device, dtype=dtype)
            for backward in (False, True) if config.backward else (False,):
                mode = "fwd+bwd" if backward else "fwd"
                if progress:
                    progress(f"N={size} batch={batch} {mode}")
                modules: list[nn.Module] = [linear, *layers.values()]
                if config.compile:
                    modules = [torch.compile(m) for m in modules]
                timings = time_interleaved([_step(m, x, backward) for m in modules], device,
                                           warmup=config.warmup, repeats=config.repeats_for(size),
                                           min_time=config.min_time)
                base: Timing = timings[0]
                for (name, layer), t in zip(layers.items(), timings[1:]):
                    flops = layer.flops(batch) * (3 if backward else 1)
                    nbytes = bytes_moved(layer, batch, size, size, element, backward)
                    result.rows.append(BenchRow(
                        name, size, batch, mode, 1e3 * t.median, t.spread, 1e3 * base.median,
                        base.paired_ratio(t), nbytes / 1e6, 1e3 * bound_seconds(machine, nbytes, flops),
                        samples=t.samples))
                lin_bytes = bytes_moved(linear, batch, size, size, element, backward)
                lin_flops = 2 * batch * size * size * (3 if backward else 1)
                result.rows.append(BenchRow("nn.Linear", size, batch, mode, 1e3 * base.median, base.spread,
                                            1e3 * base.median, 1.0, lin_bytes / 1e6,
                                            1e3 * bound_seconds(machine, lin_bytes, lin_flops),
                                            samples=base.samples))
            if config.collapse:
                if progress:
                    progress(f"N={size} batch={batch} collapse forms")
                for name, (form, ms, ratio) in _collapse_ratios(layers, x, config, device).items():
                    row = result.find(name, size, "fwd", batch)
                    assert row is not None
                    row.collapsed, row.collapsed_ms, row.collapse_ratio = form, ms, ratio
    return result
