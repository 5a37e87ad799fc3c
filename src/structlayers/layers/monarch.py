"""Monarch matrices (Dao et al., 2022, "Monarch: Expressive Structured Matrices for Efficient and
Accurate Training", ICML): ``M = P L P^T R``, two block-diagonal factors and a fixed
reshape-transpose permutation ``P``, computed with two batched matmuls."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structlayers.layers.blockproduct import BlockProductLayer
from structlayers.layers.projection import assign_bias, dense_target, init_product_, padded, truncated_factors
from structlayers.registry import register
from structlayers.transforms.dct import needs_graph


def _blocks_out(left: Tensor, g: Tensor, bias: Tensor | None) -> Tensor:
    """``y[j] = g[j] L[j]`` (+ bias) as ``(rows, t b + j)``.  The output permutation ``P`` as two cheap
    copies: whole ``t`` rows to ``(rows, j, t)``, then one ``b x s`` tile transpose per row, which
    also adds the bias (a single ``(j, rows, t) -> (rows, t, j)`` copy strides across the batch and
    is several times slower)."""
    b, s, rows = left.shape[0], left.shape[2], g.shape[1]
    tiles = torch.bmm(g, left).transpose(0, 1).contiguous().transpose(1, 2)      # (rows, t, j)
    if bias is not None:  # bias first: the sum takes its row-major layout, so the reshape is free
        tiles = torch.add(bias.view(s, b), tiles)
    return tiles.reshape(rows, s * b)


def _monarch_forward(x: Tensor, right: Tensor, left: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(x M^T + bias, g)`` for ``x (rows, b p)`` and a bias of ``s b`` entries.  Every bmm operand
    has a unit stride (BLAS needs one, else torch copies or loops matrix by matrix).
    ``h[i] = R[i]^T x[i]^T`` is stored ``(i, (j, rho), rows)``, so the middle permutation ``P^T`` is
    a free view for rank 1: ``g[j] = (rows, (i, rho))``."""
    b, p, r = right.shape[0], right.shape[1], right.shape[2] // right.shape[0]
    rows = x.shape[0]
    xb = x.reshape(rows, b, p).transpose(0, 1)                                    # (i, rows, u)
    h = torch.bmm(right.transpose(1, 2), xb.transpose(1, 2))                      # (i, (j, rho), rows)
    g = h.view(b, b, r, rows).permute(1, 3, 0, 2).reshape(b, rows, b * r)        # (j, rows, (i, rho))
    return _blocks_out(left, g, bias), g


class _MonarchMultiply(torch.autograd.Function):
    """``(x M^T + bias, g)`` (padded sizes) with a backward in the forward's layout: four bmms, two
    per-row tile transposes (grad-out in, grad-in out), nothing transposed across the batch.  The
    ``setup_context`` form with a generated vmap rule, so functorch transforms (``jacrev`` in the
    approximation lab) work through it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, right: Tensor, left: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return _monarch_forward(x, right, left, bias)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, right, left, _ = inputs
        g = output[1]
        ctx.mark_non_differentiable(g)
        ctx.save_for_backward(x, right, left, g)

    @staticmethod
    def backward(ctx, grad: Tensor, _grad_g: Tensor | None):  # type: ignore[override]
        x, right, left, g = ctx.saved_tensors
        b, p, br = right.shape
        rows, s, r = x.shape[0], left.shape[2], br // b
        dy = grad.reshape(rows, s, b).transpose(1, 2).contiguous().transpose(0, 1)  # (j, rows, t)
        d_left = torch.bmm(g.transpose(1, 2), dy) if ctx.needs_input_grad[2] else None
        d_bias = grad.sum(0) if ctx.needs_input_grad[3] else None
        d_x = d_right = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            dg = torch.bmm(left, dy.transpose(1, 2))                                # (j, (i, rho), rows)
            dh = dg.reshape(b, b, r, rows).permute(1, 3, 0, 2).reshape(b, rows, b * r)  # (i, rows, (j, rho))
            if ctx.needs_input_grad[1]:
                d_right = torch.bmm(x.reshape(rows, b, p).permute(1, 2, 0), dh)     # (i, u, (j, rho))
            if ctx.needs_input_grad[0]:
                d_x = torch.bmm(dh, right.transpose(1, 2)).transpose(0, 1).reshape(rows, b * p)  # (i, rows, u)
        return d_x, d_right, d_left, d_bias


@register("monarch")
class Monarch(BlockProductLayer):
    """``y = x M^T + b`` with ``M = P L P^T R`` (Dao et al., 2022, Def. 3.1, generalised to
    rectangular shapes and to rank ``r`` per block pair).

    ``R`` has ``b = nblocks`` blocks, block ``i`` mapping input slice ``i`` (``p = ceil(in / b)``
    contiguous features) to ``b * r`` values ``(j, rho)``; ``P^T`` regroups them by ``j`` (a transpose
    of the ``(i, j)`` grid); ``L`` has ``b`` blocks, block ``j`` mapping the ``b * r`` values
    ``(i, rho)`` to ``s = ceil(out / b)`` values ``t``; ``P`` writes value ``t`` of block ``j`` to
    output ``t b + j`` (the layout of the reference ``blockdiag_butterfly_multiply``).  So the
    ``s x p`` block ``(j, i)`` of ``M`` (rows ``t b + j``, columns ``i p + u``) is
    ``sum_rho L[j, (i, rho), :] R[i, :, (j, rho)]``: a matrix is Monarch exactly when all these
    blocks have rank <= r.  With ``in = out = n = b^2`` and ``r = 1``
    this is the paper's square Monarch matrix; ``r = n / b^2`` gives the two ``b``-block factors of
    size ``n / b`` of the reference ``MonarchLinear``.  Inputs are zero-padded to ``b p`` and outputs
    cropped from ``b s``.

    ``init="linear"``: entries of ``M`` with ``nn.Linear``'s variance; ``init="project"``: the
    projection (:meth:`project_`) of an ``nn.Linear``-initialised dense weight.
    """

    def build_factors(self) -> None:
        b, r = self.nblocks, self.rank
        self.check_parameter_memory(b * b * r * (self.in_block + self.out_block))
        self.R = nn.Parameter(torch.empty(b, self.in_block, b * r))
        self.L = nn.Parameter(torch.empty(b, b * r, self.out_block))

    def reset_parameters(self) -> None:
        # Var(M_ji) = r * Var(L) * Var(R) = 1 / (3 b p): nn.Linear's 1 / (3 in) on the padded input.
        init_product_(self, self.R, self.in_block, self.L, self.nblocks * self.rank)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        width, height = self.nblocks * self.in_block, self.nblocks * self.out_block
        z = (F.pad(x, (0, width - self.in_features)) if width != self.in_features else x).reshape(-1, width)
        bias = self.bias
        if bias is not None and height != self.out_features:
            bias = F.pad(bias, (0, height - self.out_features))
        if needs_graph(z, self.R, self.L, bias):
            y = _MonarchMultiply.apply(z, self.R, self.L, bias)[0]
        else:
            y = _monarch_forward(z, self.R, self.L, bias)[0]
        y = y.view(*x.shape[:-1], height)
        return y[..., : self.out_features] if height != self.out_features else y

    def padded_dense(self) -> Tensor:
        """``M`` on the padded sizes, ``(s b, b p)``, in float64 (one einsum, no bmm)."""
        b, r = self.nblocks, self.rank
        left = self.L.detach().double().cpu().view(b, b, r, self.out_block)    # [j, i, rho, t]
        right = self.R.detach().double().cpu().view(b, self.in_block, b, r)    # [i, u, j, rho]
        return torch.einsum("jirt,iujr->tjiu", left, right).reshape(self.out_block * b, b * self.in_block)

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Set ``M`` to the Monarch matrix nearest to ``weight`` in Frobenius norm, in closed form
        (Dao et al., 2022, Algorithm 1): a truncated SVD of rank ``r`` of every ``(j, i)`` block.

        Exact (Eckart-Young, block by block) on every shape: when ``nblocks`` divides neither size,
        padding adds whole zero rows and columns to a block, which leave the truncated SVD of its
        observed part unchanged.  ``bias`` is copied (zeroed when None)."""
        w, bias = dense_target(self, weight, bias)
        b, p, s, r = self.nblocks, self.in_block, self.out_block, self.rank
        blocks = padded(w, s * b, b * p).view(s, b, b, p).permute(1, 2, 0, 3)   # [j, i] -> (s, p)
        left, right = truncated_factors(blocks, r)                            # (j, i, s, r), (j, i, r, p)
        self.L.copy_(left.permute(0, 1, 3, 2).reshape(b, b * r, s))            # L[j, (i, rho), t]
        self.R.copy_(right.permute(1, 3, 0, 2).reshape(b, p, b * r))           # R[i, u, (j, rho)]
        assign_bias(self, bias)

    project_padded_ = project_

    @classmethod
    def from_dense(cls, weight: Tensor, bias: Tensor | None = None, **options: object) -> Monarch:
        """A Monarch layer of ``weight``'s shape set to its projection (:meth:`project_`)."""
        layer = cls(weight.shape[1], weight.shape[0], bias=bias is not None, **options)  # type: ignore[arg-type]
        layer.project_(weight, bias)
        return layer

    def row_flops(self) -> int:
        """Two batched matmuls, ``2 r b (b p + b s)`` FLOPs per row: ``O(n^{3/2})`` for
        ``b = sqrt(n)``, ``r = 1`` (Dao et al., 2022, Sec. 3.2)."""
        return 2 * self.rank * self.nblocks * self.nblocks * (self.in_block + self.out_block)

    def factor_params(self) -> int:
        """``r b^2 (p + s)``: ``2 n^{3/2}`` for a square ``n = b^2``, ``r = 1``."""
        return self.rank * self.nblocks**2 * (self.in_block + self.out_block)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, nblocks={self.nblocks}, rank={self.rank}, "
                f"blocks=({self.out_block}x{self.in_block}), bias={self.bias is not None}")
