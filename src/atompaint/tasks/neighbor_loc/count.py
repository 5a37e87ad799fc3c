"""Parameters, FLOPs and measured peak memory of the neighbor-location model, with a dense head next
to a compressed one: how much of the model the MLP head is, and what compressing it saves.

The encoder is counted on its plain-PyTorch export and its memory measured
(:mod:`atompaint.encoders.costs`); the head is counted analytically by :func:`structlayers.count`,
so compressed layers are charged their real cost.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

import structlayers
from atompaint.encoders import Encoder, build_encoder
from atompaint.encoders.costs import encoder_flops, measure_peak_memory
from atompaint.heads import HeadConfig
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from structlayers.base import count_params
from structlayers.report import format_table, human


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
        rows = [["head layer", *(c.head_layer for c in self.columns)]]
        for part in ("encoder", "mlp", "total"):
            label = {"encoder": "encoder (2 views)", "mlp": "MLP", "total": "all"}[part]
            rows.append([f"{label} params", *(human(getattr(c, part).params) for c in self.columns)])
            rows.append([f"{label} FLOPs", *(human(getattr(c, part).flops) for c in self.columns)])
        rows.append(["MLP share of params", *(f"{100 * c.mlp.params / max(1, c.total.params):.0f}%"
                                              for c in self.columns)])
        if any(c.peak_memory_bytes is not None for c in self.columns):
            rows.append([
                f"peak memory fwd+bwd (batch {self.columns[0].memory_batch_size})",
                *(human(c.peak_memory_bytes, "B", 1024) if c.peak_memory_bytes is not None else "-"
                  for c in self.columns),
            ])
        title = f"{self.config}: input {'x'.join(map(str, self.input_shape))} per view, FLOPs per example"
        table = format_table(["", *(c.label for c in self.columns)], rows, align="l" + "r" * len(self.columns))
        return f"{title}\n{table}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


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
    enc = PartCount(count_params(encoder), 2 * encoder_flops(encoder))
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
    """The table of a neighbor-loc training config: dense head, compressed head, compressed+collapsed.

    The compressed head is ``head_layer`` (with ``head_depth``) when given, else the config's own
    head when it is not dense, else an ACDC stack of depth ``head_depth`` (default 12).
    """
    from atompaint.training.config import load_config

    config = load_config(config_path)
    if config.task != "neighbor-loc":
        raise ValueError("`atompaint count` tables the neighbor-location model; give a neighbor-loc config")
    if num_classes is None:
        num_classes = config.data.num_classes
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
