"""The rank-r factorisation ``y = (x U) V + b``, initialised with the variance of ``nn.Linear``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from structlayers.base import FlopCount, StructuredLinear, linear_flops, rows_of
from structlayers.layers.dense import copy_bias
from structlayers.layers.projection import dense_target, truncated_factors
from structlayers.registry import register


@register("lowrank")
class LowRank(StructuredLinear):
    """``y = (x U) V + b`` with ``U: (in, rank)``, ``V: (rank, out)``; default rank ``min(in, out) // 4``."""

    def __init__(self, in_features: int, out_features: int, *, rank: int | None = None, bias: bool = True) -> None:
        super().__init__(in_features, out_features)
        rank = max(1, min(in_features, out_features) // 4) if rank is None else rank
        if not isinstance(rank, int) or rank < 1 or rank > min(in_features, out_features):
            raise ValueError(
                f"layer 'lowrank': rank must be an integer in [1, {min(in_features, out_features)}], got {rank!r}"
            )
        self.rank = rank
        # Scaled so that U V has the variance of a Kaiming-uniform nn.Linear weight.
        std = (1.0 / (3.0 * in_features * rank)) ** 0.25
        self.U = nn.Parameter(torch.randn(in_features, rank) * std)
        self.V = nn.Parameter(torch.randn(rank, out_features) * std)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        y = (x @ self.U) @ self.V
        return y + self.bias if self.bias is not None else y

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        self.check_dense_memory(16)
        w = (self.U.detach().double() @ self.V.detach().double()).T.to(self.U.dtype)
        return w.contiguous(), None if self.bias is None else self.bias.detach().clone()

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        rows = rows_of(batch_shape)
        return linear_flops(rows, self.in_features, self.rank, False) + linear_flops(
            rows, self.rank, self.out_features, self.bias is not None
        )

    def params(self) -> int:
        return self.rank * (self.in_features + self.out_features) + (self.out_features if self.bias is not None else 0)

    def low_precision_native(self, rows: int, device: torch.device, dtype: torch.dtype) -> bool:
        return True

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None) -> None:
        """The truncated SVD of ``weight`` (the best rank-r approximation, Eckart-Young)."""
        u, v = truncated_factors(dense_target(self, weight, bias)[0].T, self.rank)
        self.U.copy_(u)
        self.V.copy_(v)
        copy_bias(self.bias, bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}"
