"""Low rank plus diagonal: ``W = D + U V^T`` (e.g. the diagonal-plus-low-rank covariances of
factor analysis; as a compressed layer, Zhao et al., 2017, and the "D + UV" baseline of
Thomas et al., 2018, "Learning Compressed Transforms with Low Displacement Rank")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structlayers.base import FlopCount, StructuredLinear, linear_flops, rows_of
from structlayers.layers.projection import assign_bias, check_positive, dense_target, linear_uniform_, truncated_factors
from structlayers.registry import register


@register("lowrank_diag")
class LowRankDiag(StructuredLinear):
    """``y = x D^T + (x U) V + b``: ``D`` the ``out x in`` rectangular diagonal (``min(in, out)``
    entries ``d``), ``U: (in, rank)``, ``V: (rank, out)``; ``min(in, out) + rank (in + out)``
    (+bias) parameters.  Default rank ``max(1, min(in, out) // 4)``, like ``lowrank``.

    ``d`` starts with ``nn.Linear``'s entry distribution and ``U V`` with the variance of a
    Kaiming-uniform ``nn.Linear`` weight.
    """

    stackable = True

    def __init__(self, in_features: int, out_features: int, *, rank: int | None = None, bias: bool = True) -> None:
        super().__init__(in_features, out_features)
        rank = max(1, min(in_features, out_features) // 4) if rank is None else rank
        check_positive(self.name, rank=rank)
        if rank > min(in_features, out_features):
            raise ValueError(f"layer 'lowrank_diag': rank must be at most {min(in_features, out_features)}, "
                             f"got {rank}")
        self.rank, self.diagonal = rank, min(in_features, out_features)
        self.check_parameter_memory((in_features + out_features) * rank, copies=2)  # randn, then scaled
        self.d = nn.Parameter(torch.empty(self.diagonal))
        std = (1.0 / (3.0 * in_features * rank)) ** 0.25
        self.U = nn.Parameter(torch.randn(in_features, rank) * std)
        self.V = nn.Parameter(torch.randn(rank, out_features) * std)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        linear_uniform_(self.d, in_features)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        k = self.diagonal
        diag = x[..., :k] * self.d
        if k < self.out_features:
            diag = F.pad(diag, (0, self.out_features - k))
        y = torch.addmm(diag.reshape(-1, self.out_features), (x @ self.U).reshape(-1, self.rank), self.V)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        self.check_dense_memory(8 + self.U.element_size())  # the float64 product, the result
        weight = (self.U.detach().double() @ self.V.detach().double()).T.cpu()
        weight[range(self.diagonal), range(self.diagonal)] += self.d.detach().double().cpu()
        bias = self.bias.detach().clone() if self.bias is not None else None
        return weight.to(self.U.dtype).contiguous(), bias

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None = None, iterations: int = 30,
                 tol: float = 1e-10) -> None:
        """Fit ``D + U V^T`` to ``weight`` in Frobenius norm by exact block-coordinate descent (no
        closed form exists): alternately ``d = diag(W - U V^T)`` and ``U V^T`` = the truncated SVD
        of ``W - D`` (Eckart-Young), starting from ``d = diag(W)``.  The error never increases; it
        stops after ``iterations`` rounds or when a round lowers the squared error by less than
        ``tol`` relative to ``||W||^2``.  ``bias`` is copied (zeroed when None)."""
        w, bias = dense_target(self, weight, bias)
        k = self.diagonal
        idx = torch.arange(k)
        scale = float((w**2).sum()) or 1.0
        d = w[idx, idx].clone()
        previous = math.inf
        for _ in range(max(1, iterations)):
            residual = w.clone()
            residual[idx, idx] -= d
            left, right = truncated_factors(residual, self.rank)
            low = left @ right
            d = (w - low)[idx, idx]
            error = float(((w - low) ** 2).sum() - (d**2).sum()) / scale
            if previous - error < tol:
                break
            previous = error
        self.U.copy_(right.T)
        self.V.copy_(left.T)
        self.d.copy_(d)
        assign_bias(self, bias)

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        """The rank-``r`` product (``2 r (in + out)`` FLOPs per row), the diagonal product
        (``min(in, out)``), adding it to the product (``out``), and the bias."""
        rows = rows_of(batch_shape)
        low = linear_flops(rows, self.in_features, self.rank, False) + linear_flops(
            rows, self.rank, self.out_features, self.bias is not None)
        return low + FlopCount(elementwise=rows * (self.diagonal + self.out_features))

    def params(self) -> int:
        return (self.diagonal + self.rank * (self.in_features + self.out_features)
                + (self.out_features if self.bias is not None else 0))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, bias={self.bias is not None}"
