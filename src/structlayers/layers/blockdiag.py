"""Block-diagonal dense layer: ``groups`` independent dense blocks (ShuffleNet's grouped linear map).

Stacked with shuffles between factors it mixes all features, the comparison point the research
log proposed for ACDC: does the cosine basis beat shuffled block-diagonal matrices?
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from structlayers.base import FlopCount, linear_flops, rows_of
from structlayers.layers.projection import block_diagonal, observed_target, padded_bias
from structlayers.layers.square import SquareLayer, square_size
from structlayers.registry import register


@register("blockdiag")
class BlockDiagonal(SquareLayer):
    """``groups`` dense ``b x b`` blocks on the (padded) square size ``N = groups * b``."""

    stackable = True

    def __init__(
        self, in_features: int, out_features: int, *, groups: int = 4, bias: bool = True, pow2_blocks: bool = False
    ) -> None:
        super().__init__(in_features, out_features)
        self.size, self.block = square_size(self.name, in_features, out_features, groups, pow2_blocks)
        self.groups = groups
        self.check_parameter_memory(groups * self.block**2)
        bound = 1 / math.sqrt(self.block)
        self.weight = nn.Parameter(torch.empty(groups, self.block, self.block).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        z = self.pad(x)
        shape = z.shape
        z = z.reshape(-1, self.groups, self.block).transpose(0, 1)
        y = torch.bmm(z, self.weight).transpose(0, 1).reshape(shape)
        y = self.crop(y)
        return y + self.bias if self.bias is not None else y

    def square_reference(self, z: Tensor) -> Tensor:
        return z @ torch.block_diag(*self.weight.detach().double().cpu())

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        rows = rows_of(batch_shape)
        blocks = linear_flops(rows * self.groups, self.block, self.block, False)
        return blocks + FlopCount(elementwise=rows * self.out_features if self.bias is not None else 0)

    def params(self) -> int:
        return self.groups * self.block**2 + (self.out_features if self.bias is not None else 0)

    def low_precision_native(self, rows: int, device: torch.device, dtype: torch.dtype) -> bool:
        return True

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None) -> None:
        """The target's diagonal blocks, copied (the Frobenius-nearest block-diagonal map)."""
        target, _ = observed_target(weight, self.size)
        self.weight.copy_(block_diagonal(target, self.groups))
        if self.bias is not None:
            self.bias.copy_(padded_bias(bias, self.out_features))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.groups}, block={self.block}"
