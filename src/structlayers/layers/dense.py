"""The reference layer: the dense ``nn.Linear`` baseline."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structlayers.base import FlopCount, StructuredLinear, linear_flops, rows_of
from structlayers.registry import register


def copy_bias(own: Tensor | None, bias: Tensor | None) -> None:
    """``own <- bias`` (zeros without one); a layer without a bias keeps none."""
    if own is not None:
        own.copy_(bias) if bias is not None else own.zero_()


@register("dense")
class Dense(StructuredLinear):
    """``y = x W^T + b``, initialised like ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True) -> None:
        super().__init__(in_features, out_features)
        self.check_parameter_memory(in_features * out_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return F.linear(x, self.weight, self.bias)

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        return self.weight.detach().clone(), None if self.bias is None else self.bias.detach().clone()

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        return linear_flops(rows_of(batch_shape), self.in_features, self.out_features, self.bias is not None)

    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias is not None else 0)

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None) -> None:
        """A copy: the dense family holds every map."""
        self.weight.copy_(weight)
        copy_bias(self.bias, bias)

    def low_precision_native(self, rows: int, device: torch.device, dtype: torch.dtype) -> bool:
        return True
