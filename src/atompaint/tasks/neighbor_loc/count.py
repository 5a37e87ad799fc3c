"""Parameters, FLOPs and measured peak memory of the neighbor-location model, side by side for
encoder variants (dense / separable / separable with structured mixing) or for head variants (dense /
compressed / compressed and collapsed).

The encoder is counted as escnn executes it, per module type (:func:`atompaint.encoders.costs.encoder_cost`),
and the memory of a training step measured; the head is counted analytically by
:func:`structlayers.count`, so compressed layers are charged their real cost.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

import structlayers
from atompaint.encoders import Encoder, EncoderConfig, build_encoder
from atompaint.encoders.automix import describe_choices
from atompaint.encoders.costs import COST_KINDS, encoder_cost, measure_peak_memory
from atompaint.heads import HeadConfig
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from structlayers import LayerSpec
from structlayers.base import count_params
from structlayers.utils.report import format_table, human


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
    encoder_form: str = ""
    #: Encoder FLOPs per example (both views) by module type (:data:`~atompaint.encoders.costs.COST_KINDS`).
    encoder_flops_by_type: dict[str, int] = field(default_factory=dict)
    #: The matmul part of the encoder FLOPs.
    encoder_matmul_flops: int = 0


@dataclass
class CountTable:
    """Side-by-side counts of the same encoder with different heads."""

    config: str
    input_shape: tuple[int, ...]
    columns: list[ModelCount] = field(default_factory=list)

    def to_text(self) -> str:
        rows = []
        if any(c.encoder_form for c in self.columns):
            rows.append(["encoder", *(c.encoder_form for c in self.columns)])
        rows.append(["head layer", *(c.head_layer for c in self.columns)])
        for part in ("encoder", "mlp", "total"):
            label = {"encoder": "encoder (2 views)", "mlp": "MLP", "total": "all"}[part]
            rows.append([f"{label} params", *(human(getattr(c, part).params) for c in self.columns)])
            rows.append([f"{label} FLOPs", *(human(getattr(c, part).flops) for c in self.columns)])
            if part == "encoder" and any(c.encoder_flops_by_type for c in self.columns):
                for kind in COST_KINDS:
                    if any(c.encoder_flops_by_type.get(kind) for c in self.columns):
                        rows.append([f"  {kind} FLOPs", *(human(c.encoder_flops_by_type.get(kind, 0))
                                                          for c in self.columns)])
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
    table = CountTable(config=config_name, input_shape=shape)
    for label, head_config in heads.items():
        table.columns.append(_column(label, encoder, num_classes, head_config, memory_batch_size))
    return table


def encoder_form(config: EncoderConfig) -> str:
    """A short description of how an encoder's convolutions are built."""
    if config.conv == "dense":
        form = "dense"
    elif config.conv == "grid":
        return "grid (24 cube rotations) + " + config.conv_spec.mixing.label + " mixing"
    else:
        form = "separable" + (" (irrep-wise depthwise)" if config.depthwise == "irrep" else "")
        if config.mixing.auto:
            form += " + " + (describe_choices(config.mixing_choices) if config.mixing_choices else "auto mixing")
        elif config.mixing.name != "dense":
            form += f" + {config.conv_spec.mixing.label}"
    has_products = config.architecture == "resnet" and config.block == "gamma"  # only gamma ResBlocks have them
    return form + (" + CG tensor product" if config.tensor_product == "clebsch-gordan" and has_products else "")


def _column(label: str, encoder: Encoder, num_classes: int, head_config: HeadConfig,
            memory_batch_size: int | None) -> ModelCount:
    """One column: the encoder counted per module type (two views per example), the head counted
    by structlayers (collapsed first when the label ends in "collapsed"), peak memory measured."""
    cfg = encoder.config
    shape = (cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)
    cost = encoder_cost(encoder)
    enc = PartCount(count_params(encoder), 2 * cost.total.total)
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
        head_layer=head_config.layer.label,
        encoder=enc,
        mlp=mlp,
        total=PartCount(enc.params + mlp.params, enc.flops + mlp.flops),
        encoder_form=encoder_form(cfg),
        encoder_flops_by_type={k: 2 * v.total for k, v in cost.flops.items()},
        encoder_matmul_flops=2 * cost.total.matmul,
    )
    if memory_batch_size:
        views = tuple(torch.randn(memory_batch_size, *shape) for _ in range(2))
        column.peak_memory_bytes = measure_peak_memory(model, views)
        column.memory_batch_size = memory_batch_size
    return column


#: The structured mixing of the third encoder column when neither the config nor a flag names one.
DEFAULT_MIXING = "acdc:depth=2"


def encoder_variants(config: EncoderConfig) -> dict[str, EncoderConfig]:
    """Dense, separable (dense mixing) and separable with the config's structured mixing (or
    :data:`DEFAULT_MIXING` when the config's mixing is dense), each with the config's tensor product;
    a grid-domain config (``conv: grid``) adds its own column."""
    structured = config if config.mixing.name != "dense" else replace(config, mixing=DEFAULT_MIXING)
    label = structured.mixing.label
    variants = {
        "dense": replace(config, conv="dense"),
        "separable": replace(config, conv="separable", mixing="dense"),
        f"separable + {label}": replace(structured, conv="separable"),
    }
    if config.conv == "grid":
        variants[f"grid + {config.conv_spec.mixing.label}"] = config
    return variants


def count_encoder_variants(
    encoders: dict[str, EncoderConfig],
    num_classes: int,
    head: HeadConfig,
    *,
    config_name: str = "",
    memory_batch_size: int | None = 2,
) -> CountTable:
    """Counts of the neighbor-location model with each encoder in ``encoders`` (label -> config)
    and the same head; the same seed builds each, so the columns differ only in their form."""
    first = next(iter(encoders.values()))
    table = CountTable(config=config_name,
                       input_shape=(first.in_channels, first.input_size, first.input_size, first.input_size))
    for label, config in encoders.items():
        torch.manual_seed(0)
        table.columns.append(_column(label, build_encoder(config), num_classes, head, memory_batch_size))
    return table


def build_count_table(
    config_path: str,
    *,
    compare: Literal["encoders", "heads"] = "encoders",
    encoder_changes: dict[str, Any] | None = None,
    head_layer: str | None = None,
    head_depth: int | None = None,
    memory_batch_size: int | None = 2,
    num_classes: int | None = None,
) -> CountTable:
    """The table of a neighbor-loc training config.

    ``compare="encoders"``: the config's encoder (after ``encoder_changes``, dotted ``encoder.*`` keys)
    as dense, separable and separable + structured mixing (:func:`encoder_variants`), with the
    config's head.  ``compare="heads"``: the config's encoder with a dense head, a compressed head
    and the compressed head collapsed; the compressed head is ``head_layer`` (its text form,
    ``"acdc:depth=12"``; ``head_depth`` replaces its depth) when given, else the config's own head
    when it is not dense, else an ACDC stack of depth ``head_depth`` (default 12).
    """
    from atompaint.training.config import load_config
    from structlayers.configs import replace_fields

    config = load_config(config_path)
    if config.task != "neighbor-loc":
        raise ValueError("`atompaint count` tables the neighbor-location model; give a neighbor-loc config")
    if encoder_changes:
        config = replace_fields(config, encoder_changes, "config")
    if num_classes is None:
        num_classes = config.data.num_classes
    if compare == "encoders":
        return count_encoder_variants(encoder_variants(config.encoder), num_classes, config.head,
                                      config_name=config.name, memory_batch_size=memory_batch_size)
    if compare != "heads":
        raise ValueError(f"compare must be 'encoders' or 'heads', got {compare!r}")
    dense = config.head.with_layer("dense")
    if head_layer is not None:
        spec = LayerSpec.parse(head_layer)
        compressed = config.head.with_layer(spec if head_depth is None else spec.replace(depth=head_depth))
    elif config.head.layer.name != "dense":
        compressed = config.head
    else:
        compressed = config.head.with_layer(LayerSpec("acdc", head_depth if head_depth is not None else 12))
    encoder = build_encoder(config.encoder)
    heads = {"dense": dense, "compressed": compressed, "compressed, collapsed": compressed}
    return count_neighbor_loc(
        encoder, num_classes, heads, config_name=config.name, memory_batch_size=memory_batch_size,
    )
