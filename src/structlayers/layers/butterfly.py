"""Butterfly matrices (Dao et al., 2019, "Learning Fast Algorithms for Linear Transforms Using
Butterfly Factorizations", ICML; Dao et al., 2020, "Kaleidoscope", ICLR): a product of
``log2 N`` butterfly factors, each mixing the pairs ``(i, i + s)`` of every block of ``2s`` features
with its own learned 2x2 matrix.  The FFT, the DCT and the Hadamard transform are butterflies."""

from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor, nn

from structlayers.base import FlopCount, rows_of
from structlayers.configs import Words
from structlayers.layers.projection import REFINE_STEPS, assign_bias, dense_target, padded, refine_, truncated_factors
from structlayers.layers.square import SquareLayer
from structlayers.registry import register

#: The words of the ``init`` option (of :mod:`structlayers.layers.init`'s vocabulary).
INITS = Words(("ortho", "normal"))


@register("butterfly")
class Butterfly(SquareLayer):
    """``log2 N`` butterfly factors on the padded power-of-two size ``N >= max(in, out)``;
    ``2 N log2 N`` (+bias) parameters, ``O(N log N)`` time.

    ``increasing_stride=True`` applies the stride-1 factor first (``B = B_N ... B_4 B_2``, the
    decimation-in-time FFT order), ``False`` the stride-``N/2`` factor first.
    ``init="ortho"``: every 2x2 twiddle a random rotation, so the product is orthogonal (the
    Kaleidoscope paper's orthogonal initialisation); ``"normal"``: N(0, 1/2) entries, so every
    factor preserves the expected squared norm of its input.
    """

    stackable = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        increasing_stride: bool = True,
        init: Annotated[str, INITS] = "ortho",
    ) -> None:
        super().__init__(in_features, out_features)
        init = self.check_word("init", init, INITS)
        self.size = 1 << (max(in_features, out_features, 2) - 1).bit_length()
        self.levels = self.size.bit_length() - 1
        self.increasing_stride, self.init = increasing_stride, init
        # twiddle[level, pair, out, in]; pair = block * stride + position within the block's half.
        self.twiddle = nn.Parameter(torch.empty(self.levels, self.size // 2, 2, 2))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init == "ortho":
            theta = torch.rand(self.levels, self.size // 2) * (2 * math.pi)
            c, s = theta.cos(), theta.sin()
            self.twiddle.copy_(torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2))
        else:
            self.twiddle.normal_(0.0, math.sqrt(0.5))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def strides(self) -> list[int]:
        """The stride of each factor, in the order they are applied."""
        order = range(self.levels) if self.increasing_stride else reversed(range(self.levels))
        return [1 << level for level in order]

    def _levels(self) -> list[tuple[int, int]]:
        return [(s.bit_length() - 1, s) for s in self.strides()]

    def square_forward(self, z: Tensor) -> Tensor:
        """The factors on ``(..., N)`` rows: per pair, two multiply-adds per output."""
        shape = z.shape
        for level, stride in self._levels():
            v = z.reshape(-1, self.size // (2 * stride), 2, stride)
            t = self.twiddle[level].view(self.size // (2 * stride), stride, 2, 2).permute(2, 3, 0, 1)
            top, bottom = v[:, :, 0], v[:, :, 1]
            z = torch.stack([t[0, 0] * top + t[0, 1] * bottom, t[1, 0] * top + t[1, 1] * bottom], dim=2)
        return z.reshape(shape)

    def forward(self, x: Tensor) -> Tensor:
        y = self.crop(self.square_forward(self.pad(x)))
        return y + self.bias if self.bias is not None else y

    def square_reference(self, z: Tensor) -> Tensor:
        """Every factor as an einsum over (block, out, in, position), in float64 on CPU."""
        twiddle = self.twiddle.detach().double().cpu()
        for level, stride in self._levels():
            blocks = self.size // (2 * stride)
            v = z.reshape(*z.shape[:-1], blocks, 2, stride)
            t = twiddle[level].view(blocks, stride, 2, 2)
            z = torch.einsum("kpoi,...kip->...kop", t, v).reshape(z.shape)
        return z

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None = None, *, refine_steps: int = REFINE_STEPS) -> None:
        """A butterfly near ``weight``: the hierarchical factorisation as a start, then
        ``refine_steps`` L-BFGS iterations on the observed entries (:func:`refine_`; 0 keeps the start).

        The start peels off the outermost factor (Le Magoarou & Gribonval, 2016; Zheng et al., 2023,
        "Efficient identification of butterfly sparse matrix factorizations"): with increasing
        strides, ``W = F_{N/2} diag(B_0, B_1)``, so ``W`` has blocks ``D_{ab} B_b`` with diagonal
        ``D_{ab}``; for every row ``i`` of a half, the ``2 x N/2`` matrix of rows ``i`` and
        ``i + N/2`` of column half ``b`` is ``(D_{0b}[i], D_{1b}[i])^T B_b[i]``, rank 1.  Its best
        rank-1 approximation gives the twiddles and the rows of ``B_b``, which are factored in
        turn.  Exact for members of the family (every step is then an exact rank-1 split); in
        general a heuristic, which the refinement improves.  ``increasing_stride=False`` factors
        ``W^T``.  The bias is copied (zeroed when None)."""
        w, bias = dense_target(self, weight, bias)
        n = self.size
        matrix = padded(w, n, n)
        twiddle = torch.zeros(self.levels, n // 2, 2, 2, dtype=torch.float64)
        self._peel(matrix if self.increasing_stride else matrix.T, twiddle, 0)
        self.twiddle.copy_(twiddle if self.increasing_stride else twiddle.transpose(-1, -2))
        assign_bias(self, bias)
        refine_(self, weight, bias, refine_steps)

    def _peel(self, matrix: Tensor, twiddle: Tensor, block: int) -> None:
        """Fill ``twiddle`` for the sub-butterfly ``matrix`` (size ``2 h``) occupying ``block`` at its level."""
        h = matrix.shape[0] // 2
        level = h.bit_length() - 1
        if h == 1:
            twiddle[0, block] = matrix
            return
        halves = []
        for b in range(2):
            pairs = torch.stack([matrix[:h, b * h:(b + 1) * h], matrix[h:, b * h:(b + 1) * h]], dim=1)  # (h, 2, h)
            left, right = truncated_factors(pairs, 1)                       # (h, 2, 1), (h, 1, h)
            twiddle[level, block * h:(block + 1) * h, :, b] = left[..., 0]
            halves.append(right[:, 0, :])
        for b, half in enumerate(halves):
            self._peel(half, twiddle, 2 * block + b)

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        """Per factor and row, ``N/2`` pairs of 4 multiplies and 2 adds: ``3 N log2 N`` FLOPs per
        row in all (Dao et al., 2019, Sec. 3: ``O(N log N)``), elementwise kernels only."""
        rows = rows_of(batch_shape)
        bias = rows * self.out_features if self.bias is not None else 0
        return FlopCount(elementwise=rows * 3 * self.size * self.levels + bias)

    def params(self) -> int:
        """``4 (N/2) log2 N = 2 N log2 N`` twiddle entries (+ bias)."""
        return 2 * self.size * self.levels + (self.out_features if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, size={self.size}, increasing_stride={self.increasing_stride}, "
                f"init={self.init!r}, bias={self.bias is not None}")
