"""Parameters, FLOPs and measured peak memory of atompaint models: the table of seed 004.

The encoder's FLOPs are measured with :class:`torch.utils.flop_counter.FlopCounterMode` on its
plain-PyTorch export (escnn's basis expansion is a training-time cost, not an inference one);
the head is counted analytically by :func:`structlayers.count`, so compressed layers are charged
their real cost.  Peak memory of a forward+backward pass is *measured* (seed 000: torchinfo's
estimate missed escnn's large temporary buffers).
"""

from __future__ import annotations

import gc
import json
import resource
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import structlayers
from atompaint.encoders import Encoder, build_encoder
from atompaint.heads import HeadConfig, NeighborLocClassifier
from structlayers.allocator import release_free_memory, set_malloc_thresholds


@dataclass
class PartCount:
    """Parameters and forward FLOPs (per example, 2 per multiply-add) of one part of a model."""

    params: int
    flops: int


@dataclass
class ModelCount:
    """Encoder, MLP and whole-model counts for one head variant, plus measured peak memory."""

    label: str
    head_layer: str
    encoder: PartCount
    mlp: PartCount
    total: PartCount
    peak_memory_bytes: int | None = None
    memory_batch_size: int = 0


@dataclass
class CountTable:
    """Side-by-side counts of the same encoder with different heads."""

    config: str
    input_shape: tuple[int, ...]
    columns: list[ModelCount] = field(default_factory=list)

    def to_text(self) -> str:
        header = ["", *(c.label for c in self.columns)]
        rows = [header, ["head layer", *(c.head_layer for c in self.columns)]]
        for part in ("encoder", "mlp", "total"):
            label = {"encoder": "encoder (2 views)", "mlp": "MLP", "total": "all"}[part]
            rows.append([f"{label} params", *(human(getattr(c, part).params) for c in self.columns)])
            rows.append([f"{label} FLOPs", *(human(getattr(c, part).flops) for c in self.columns)])
        share = [f"{100 * c.mlp.params / max(1, c.total.params):.0f}%" for c in self.columns]
        rows.append(["MLP share of params", *share])
        if any(c.peak_memory_bytes is not None for c in self.columns):
            rows.append([
                f"peak memory fwd+bwd (batch {self.columns[0].memory_batch_size})",
                *(human(c.peak_memory_bytes, "B", 1024) if c.peak_memory_bytes is not None else "-" for c in self.columns),
            ])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = [f"{self.config}: input {'x'.join(map(str, self.input_shape))} per view, FLOPs per example"]
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
            if i == 1:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def human(value: int | float, unit: str = "", base: int = 1000) -> str:
    """``1234567 -> '1.23M'`` (or ``'1.18 MiB'``-style with ``base=1024``)."""
    prefixes = ["", "K", "M", "G", "T", "P"]
    value = float(value)
    i = 0
    while abs(value) >= base and i < len(prefixes) - 1:
        value /= base
        i += 1
    suffix = prefixes[i] + ("i" if base == 1024 and i else "") + unit
    text = f"{value:.0f}" if i == 0 else f"{value:.3g}"
    return f"{text} {suffix}".strip() if unit else f"{text}{suffix}"


def encoder_flops(encoder: Encoder) -> int:
    """Forward FLOPs of one input through the exported encoder (``FlopCounterMode``)."""
    cfg = encoder.config
    was_training = encoder.training
    exported = encoder.export()
    x = torch.zeros(1, cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        exported.fields(x)
    encoder.train(was_training)
    return int(counter.get_total_flops())


def trainable_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def measure_peak_memory(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """Measured peak memory (bytes) of one training-mode forward+backward pass above the baseline.

    On CUDA this is ``max_memory_allocated``; on CPU the process's peak resident set size
    (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident size before the pass,
    with glibc told to map large blocks directly, so escnn's temporary buffers are included.  A warm-up pass runs first and is not measured.  Falls back to ``ru_maxrss`` where the peak cannot
    be reset (then it is an upper bound).
    """
    model.train()
    device = next(model.parameters()).device
    inputs = tuple(x.to(device) for x in inputs)
    # One unmeasured pass first, so one-time allocations (kernels, thread pools) are not charged.
    _forward_backward(model, inputs)
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _forward_backward(model, inputs)
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    gc.collect()
    _return_free_memory_to_os()
    reset = _reset_peak_rss()
    base = _status_kib("VmRSS")
    _forward_backward(model, inputs)
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.zero_grad(set_to_none=True)
    return max(0, int(peak - base) * 1024)


def _forward_backward(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    out = model(*inputs)
    out.float().pow(2).mean().backward()


def _return_free_memory_to_os() -> None:
    """Make RSS follow live memory: mmap every allocation over 128 KiB (glibc otherwise raises the
    threshold after frees and recycles heap pages, hiding new allocations) and trim the heap."""
    set_malloc_thresholds(128 * 1024)
    release_free_memory()


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not found in /proc/self/status")


def count_neighbor_loc(
    encoder: Encoder,
    num_classes: int,
    heads: dict[str, HeadConfig],
    *,
    config_name: str = "",
    memory_batch_size: int | None = 2,
) -> CountTable:
    """Counts of the neighbor-location model with each head in ``heads`` (label -> config).

    Every head variant shares ``encoder``; a head whose label ends in ``collapsed`` is passed
    through :func:`structlayers.collapse` first (the cheaper of structured and dense per layer).
    """
    cfg = encoder.config
    shape = (cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)
    enc = PartCount(trainable_params(encoder), 2 * encoder_flops(encoder))
    table = CountTable(config=config_name, input_shape=shape)
    for label, head_config in heads.items():
        model = NeighborLocClassifier(encoder, num_classes, head_config)
        features = torch.zeros(1, model.head.in_features)
        head: nn.Module = model.head
        if label.endswith("collapsed"):
            head, _ = structlayers.collapse(head, features, cost="flops")
            model.head = head
        report = structlayers.count(head.eval(), features)
        mlp = PartCount(report.total_params, report.total_flops)
        column = ModelCount(
            label=label,
            head_layer=head_config.layer + (f" x{head_config.depth}" if head_config.depth else ""),
            encoder=enc,
            mlp=mlp,
            total=PartCount(enc.params + mlp.params, enc.flops + mlp.flops),
        )
        if memory_batch_size:
            views = tuple(torch.randn(memory_batch_size, *shape) for _ in range(2))
            column.peak_memory_bytes = measure_peak_memory(model, views)
            column.memory_batch_size = memory_batch_size
        table.columns.append(column)
    return table


def build_count_table(
    config_path: str,
    *,
    head_layer: str | None = None,
    head_depth: int | None = None,
    memory_batch_size: int | None = 2,
    num_classes: int | None = None,
) -> CountTable:
    """The seed-004 table for a training config: dense head, compressed head, compressed+collapsed.

    The compressed head is the config's own head when it is not dense, else ``head_layer``
    (default ``acdc``) with ``head_depth`` (default 12).
    """
    from atompaint.training import load_config

    config = load_config(config_path)
    if config.task != "neighbor-loc":
        raise ValueError("`atompaint count` tables the neighbor-location model; give a neighbor-loc config")
    if num_classes is None:
        from atompaint.data import neighbor_directions

        num_classes = len(neighbor_directions(config.data.directions))
    dense = config.head.with_layer("dense")
    if head_layer is not None:
        compressed = config.head.with_layer(head_layer, head_depth)
    elif config.head.layer != "dense":
        compressed = config.head
    else:
        compressed = config.head.with_layer("acdc", head_depth if head_depth is not None else 12)
    encoder = build_encoder(config.encoder)
    heads = {"dense": dense, "compressed": compressed, "compressed, collapsed": compressed}
    return count_neighbor_loc(
        encoder, num_classes, heads, config_name=config.name, memory_batch_size=memory_batch_size,
    )
