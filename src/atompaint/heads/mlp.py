"""MLP heads built from structlayers plugins, so the same head can be dense or compressed.

A classifier head on top of a convolutional encoder typically holds most of a model's parameters
but a negligible share of its FLOPs; replacing its linear layers by structured ones (ACDC stacks,
low rank, ...) is what this head makes a one-line change (``layer: acdc, depth: 12``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import Tensor, nn

from structlayers import LayerSpec
from structlayers.configs import coerce, flat_keys

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclass
class HeadConfig:
    """An MLP ``in -> hidden[0] -> ... -> hidden[-1] -> out``.

    ``layer`` is the structlayers layer of every linear map (a
    :class:`~structlayers.LayerSpec`, or its text form such as ``"acdc:depth=12"``): a stackable
    factor (acdc, afdf, ...) with a depth is a ``stack`` of ``depth`` such factors, and a layer
    that cannot be stacked (``dense``, ``lowrank``) takes no depth.  A configuration file may give
    it flat (``layer: acdc``, ``depth: 12``, ``options: {sigma: 0.1}``).  The output layer stays
    dense unless ``compress_output``: it is tiny (a handful of classes) and structured layers pad
    it up to a square anyway.
    """

    hidden: list[int] = field(default_factory=lambda: [512])
    layer: LayerSpec = field(default_factory=LayerSpec,
                             metadata=flat_keys(layer="name", depth="depth", options="options"))
    activation: str = "relu"
    dropout: float = 0.2
    compress_output: bool = False

    def __post_init__(self) -> None:
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"unknown head activation {self.activation!r}; choose from {', '.join(_ACTIVATIONS)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")
        self.layer = coerce(self.layer, LayerSpec, "head.layer")

    def with_layer(self, layer: LayerSpec | str) -> HeadConfig:
        """The same head with another linear layer (e.g. dense <-> ``"acdc:depth=12"``)."""
        return replace(self, layer=coerce(layer, LayerSpec, "head.layer"))


def build_linear(config: HeadConfig, in_features: int, out_features: int) -> nn.Module:
    """One linear layer of the head as the configured structlayers plugin."""
    return config.layer.build(in_features, out_features)


class MLPHead(nn.Module):
    """``(linear, activation, dropout) * len(hidden)`` then an output linear: ``(..., in) -> (..., out)``."""

    def __init__(self, in_features: int, out_features: int, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.in_features = in_features
        self.out_features = out_features
        layers: list[nn.Module] = []
        width = in_features
        for hidden in config.hidden:
            layers += [build_linear(config, width, hidden), _ACTIVATIONS[config.activation]()]
            if config.dropout:
                layers.append(nn.Dropout(config.dropout))
            width = hidden
        output = config if config.compress_output else config.with_layer("dense")
        layers.append(build_linear(output, width, out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
