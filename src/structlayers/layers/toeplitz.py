"""Toeplitz layers by FFT: ``W[i, j] = t[i - j]``, constant along every diagonal, multiplied through
a circulant embedding (Golub & Van Loan, "Matrix Computations", Sec. 4.7.7); displacement rank 2
in the low displacement rank family (Sindhwani et al., 2015, "Structured Transforms for
Small-Footprint Deep Learning")."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from structlayers.base import FlopCount, StructuredLinear, rows_of
from structlayers.layers.circulant import GatheredLinear, circular_convolve, real_fft_flops, spectral_product_flops
from structlayers.layers.projection import DIAGONAL_INITS, assign_bias, dense_target, init_diagonals_
from structlayers.registry import register


@register("toeplitz")
class Toeplitz(StructuredLinear):
    """``y = x W^T + b`` with ``W (out x in)`` Toeplitz: ``in + out - 1`` (+bias) parameters
    (``t[k]`` is the diagonal ``i - j = k - in + 1``), ``O((in + out) log(in + out))`` time.

    ``W`` is the top-left corner of the circulant of size ``L``, the power of two
    ``>= in + out - 1``, whose first column is ``t``'s lower part, zeros, then its upper part.
    ``init``: as :class:`~structlayers.layers.circulant.Circulant`'s (``"linear"`` or ``"identity"``).
    """

    stackable = True

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 init: Annotated[str, DIAGONAL_INITS] = "linear") -> None:
        super().__init__(in_features, out_features)
        init = self.check_word("init", init, DIAGONAL_INITS)
        self.fft_size = 1 << (in_features + out_features - 2).bit_length()
        self.t = nn.Parameter(torch.empty(in_features + out_features - 1))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        init_diagonals_(self.t, in_features - 1, init, in_features)

    def circulant_column(self) -> Tensor:
        """The first column of the embedding circulant (length ``L``)."""
        n_in = self.in_features
        gap = self.fft_size - self.t.numel()
        return torch.cat([self.t[n_in - 1:], self.t.new_zeros(gap), self.t[: n_in - 1]])

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        y = circular_convolve(x, self.circulant_column(), self.fft_size)[..., : self.out_features]
        return y + self.bias if self.bias is not None else y

    def _diagonals(self) -> Tensor:
        """``index[i, j] = i - j + in - 1``: the entry of ``t`` at ``W[i, j]``."""
        return torch.arange(self.out_features)[:, None] - torch.arange(self.in_features)[None, :] + self.in_features - 1

    def export_form(self) -> nn.Module:
        """:class:`~structlayers.layers.circulant.GatheredLinear`: ``W`` gathered from ``t``, one matmul."""
        return GatheredLinear(self.t, self._diagonals(), self.bias)

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        self.check_dense_memory(8 + 8 + self.t.element_size())  # the int64 index, the float64 gather, the result
        weight = self.t.detach().double().cpu()[self._diagonals()]
        bias = self.bias.detach().clone() if self.bias is not None else None
        return weight.to(self.t.dtype), bias

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Set ``t`` to the Toeplitz matrix nearest to ``weight`` in Frobenius norm, in closed form:
        the diagonals are disjoint, so each ``t_k`` is the mean of its diagonal of ``weight``."""
        w, bias = dense_target(self, weight, bias)
        index = self._diagonals().reshape(-1)
        total = torch.zeros(self.t.numel(), dtype=torch.float64).index_add_(0, index, w.reshape(-1))
        self.t.copy_(total / torch.bincount(index, minlength=self.t.numel()).double())
        assign_bias(self, bias)

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        """Per row, an rfft and an irfft of length ``L`` and a complex product per bin; the
        kernel's own rfft (once per call) is not counted."""
        rows = rows_of(batch_shape)
        bias = rows * self.out_features if self.bias is not None else 0
        return FlopCount(fft=rows * 2 * real_fft_flops(self.fft_size),
                         elementwise=rows * spectral_product_flops(self.fft_size) + bias)

    def params(self) -> int:
        return self.t.numel() + (self.out_features if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fft_size={self.fft_size}, bias={self.bias is not None}"
