"""Kronecker-product layers: ``W = sum_rho A_rho (x) B_rho`` (Van Loan & Pitsianis, 1993,
"Approximation with Kronecker Products"; as a layer, e.g. Zhou et al., 2015, "Exploiting Local
Structures with the Kronecker Layer in Convolutional Networks")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structlayers.layers.blockproduct import BlockProductLayer
from structlayers.layers.projection import assign_bias, dense_target, init_product_, padded, truncated_factors
from structlayers.registry import register


@register("kronecker")
class Kronecker(BlockProductLayer):
    """``y = x W^T + b`` with ``W = sum_{rho < rank} A_rho (x) B_rho``, ``A_rho: (m1, n1)``,
    ``B_rho: (m2, n2)``; the input is read as an ``n1 x n2`` matrix ``X`` (row-major) and
    ``(A (x) B) vec(X) = vec(A X B^T)``, two matmuls per term.

    ``nblocks`` is ``n1 = m1``, the grid of ``m2 x n2`` blocks of ``W`` (default near
    ``sqrt(max(in, out))``); ``n2 = ceil(in / n1)``,
    ``m2 = ceil(out / m1)``, the input zero-padded to ``n1 n2`` and the output cropped from
    ``m1 m2``.  ``rank(m1 n1 + m2 n2)`` (+bias) parameters.  ``init="linear"``: entries of ``W``
    with ``nn.Linear``'s variance; ``"project"``: the projection (:meth:`project_`) of an
    ``nn.Linear``-initialised dense weight.
    """

    def build_factors(self) -> None:
        self.n1 = self.m1 = self.nblocks
        self.n2, self.m2 = self.in_block, self.out_block
        self.A = nn.Parameter(torch.empty(self.rank, self.m1, self.n1))
        self.B = nn.Parameter(torch.empty(self.rank, self.m2, self.n2))

    def reset_parameters(self) -> None:
        # Var(W) = rank * Var(A) * Var(B) = 1 / (3 n1 n2): nn.Linear's on the padded input.
        init_product_(self, self.B, self.n2, self.A, self.n1 * self.rank)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        batch, r = x.shape[:-1], self.rank
        z = F.pad(x, (0, self.n1 * self.n2 - self.in_features)).reshape(-1, self.n1, self.n2)
        rows = z.shape[0]
        # X B_rho^T for every rho: (rows, n1, rank * m2)
        t = z @ self.B.permute(2, 0, 1).reshape(self.n2, r * self.m2)
        # sum_rho A_rho (X B_rho^T): contract (rho, n1) in one matmul
        t = t.view(rows, self.n1, r, self.m2).permute(0, 3, 2, 1).reshape(rows, self.m2, r * self.n1)
        y = (t @ self.A.permute(0, 2, 1).reshape(r * self.n1, self.m1)).transpose(1, 2)
        y = y.reshape(*batch, self.m1 * self.m2)
        y = y[..., : self.out_features] if y.shape[-1] != self.out_features else y
        return y + self.bias if self.bias is not None else y

    def padded_dense(self) -> Tensor:
        """``W`` on the padded sizes, ``(m1 m2, n1 n2)``, in float64."""
        a, b = self.A.detach().double().cpu(), self.B.detach().double().cpu()
        return sum(torch.kron(a[i], b[i]) for i in range(self.rank))

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Set ``W`` to the sum of ``rank`` Kronecker products nearest to ``weight`` in Frobenius
        norm, in closed form (Van Loan & Pitsianis, 1993): the rearrangement
        ``R[(a, i), (c, j)] = W[(a, c), (i, j)]`` maps ``A (x) B`` to ``vec(A) vec(B)^T``, so the
        answer is the truncated SVD of ``R``.  ``bias`` is copied (zeroed when None).

        Only when ``nblocks`` divides both sizes: otherwise the padded entries of ``W`` are free,
        scattered over ``R``, and the nearest sum is a weighted low-rank problem without a closed
        form, whose alternating solvers stop at local optima (0.07-0.11 relative error on members of
        the family in our tests): ``NotImplementedError``, so that surgery falls back to fitting."""
        if (self.m1 * self.m2, self.n1 * self.n2) != (self.out_features, self.in_features):
            raise NotImplementedError(
                f"layer 'kronecker': nblocks={self.n1} divides neither {self.in_features} nor {self.out_features}, "
                "so the padded entries are free and the nearest sum of Kronecker products has no closed form; "
                "choose nblocks dividing both sizes, or fit the layer (structlayers.surgery.fit_layer)")
        self.project_padded_(weight, bias)

    @torch.no_grad()
    def project_padded_(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """The closed form of :meth:`project_` applied to the zero-padded ``weight`` on any shape: the
        projection when nothing is padded, a start (``init="project"``) otherwise."""
        w, bias = dense_target(self, weight, bias)
        m1, m2, n1, n2 = self.m1, self.m2, self.n1, self.n2
        w = padded(w, m1 * m2, n1 * n2).view(m1, m2, n1, n2)
        left, right = truncated_factors(w.permute(0, 2, 1, 3).reshape(m1 * n1, m2 * n2), self.rank)
        self.A.copy_(left.T.reshape(self.rank, m1, n1))
        self.B.copy_(right.reshape(self.rank, m2, n2))
        assign_bias(self, bias)

    def row_flops(self) -> int:
        """Per row and term, ``X B^T`` (``n1 n2 m2`` multiply-adds) then ``A (.)`` (``m1 n1 m2``):
        ``2 rank n1 m2 (n2 + m1)`` FLOPs per row."""
        return 2 * self.rank * self.n1 * self.m2 * (self.n2 + self.m1)

    def factor_params(self) -> int:
        return self.rank * (self.m1 * self.n1 + self.m2 * self.n2)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, A=({self.m1}x{self.n1}), B=({self.m2}x{self.n2}), rank={self.rank}, "
                f"bias={self.bias is not None}")
