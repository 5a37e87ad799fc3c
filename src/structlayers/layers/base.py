"""The contract every layer plugin satisfies, and the FLOP breakdown it reports."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass, split by kind (a multiply-add counts as 2, like FlopCounterMode).

    ``matmul`` is what :class:`torch.utils.flop_counter.FlopCounterMode` sees (mm/bmm/addmm/conv);
    ``fft`` is the analytic transform cost; ``elementwise`` counts diagonal scalings, twiddles and
    bias additions, which FlopCounterMode ignores.
    """

    matmul: int = 0
    fft: int = 0
    elementwise: int = 0

    @property
    def total(self) -> int:
        return self.matmul + self.fft + self.elementwise

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(self.matmul + other.matmul, self.fft + other.fft, self.elementwise + other.elementwise)

    def scaled(self, factor: int) -> FlopCount:
        return FlopCount(self.matmul * factor, self.fft * factor, self.elementwise * factor)


def rows_of(batch_shape: tuple[int, ...] | int) -> int:
    """Number of vectors in a batch of shape ``batch_shape`` (every leading dimension counts)."""
    if isinstance(batch_shape, int):
        return batch_shape
    return math.prod(batch_shape)


def linear_flops(rows: int, in_features: int, out_features: int, bias: bool) -> FlopCount:
    """A dense ``x @ W.T + b`` on ``rows`` vectors."""
    return FlopCount(matmul=2 * rows * in_features * out_features, elementwise=rows * out_features if bias else 0)


class NotCollapsibleError(ValueError):
    """Raised by ``to_dense`` for a layer that is not a linear map (e.g. a stack with activations)."""


class StructuredLinear(nn.Module, ABC):
    """Base class of every layer plugin: a (possibly structured) map ``(..., in) -> (..., out)``.

    Subclasses implement ``forward``, ``to_dense`` (the exact effective weight ``(out, in)`` and
    bias, as in ``nn.Linear``), ``flop_count`` and ``params``, all analytic, so that accounting
    never relies on tracing and the test-time collapse can compare the forms' costs.
    """

    name: ClassVar[str] = ""
    #: Whether this layer can be a factor of a ``stack`` (square, no dimension change of its own).
    stackable: ClassVar[bool] = False

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        for label, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"layer {self.name!r}: {label} must be a positive integer, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features

    @abstractmethod
    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` with ``forward(x) == x @ weight.T + bias`` (weight is ``(out, in)``)."""

    @abstractmethod
    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        """FLOPs of a forward pass on an input of shape ``(*batch_shape, in_features)``."""

    @abstractmethod
    def params(self) -> int:
        """Number of trainable real numbers (a complex parameter counts 2), computed analytically."""

    @property
    def is_linear(self) -> bool:
        """Whether the layer is an affine map, so ``to_dense`` is exact and it can be collapsed."""
        return True

    def flops(self, batch_shape: tuple[int, ...] | int = (1,)) -> int:
        return self.flop_count(batch_shape).total

    def check_input(self, x: Tensor) -> None:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"layer {self.name!r} expects input (..., {self.in_features}), got {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def dense_weight_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of ``module``'s parameters (float32 when it has none)."""
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()
