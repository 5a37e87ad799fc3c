"""Circulant layers by FFT: ``W[i, j] = c[(i - j) mod n]``, ``y = c (*) x`` (circular convolution),
the simplest member of the low displacement rank family (Cheng et al., 2015, "An Exploration of
Parameter Redundancy in Deep Networks with Circulant Projections"; Sindhwani et al., 2015,
"Structured Transforms for Small-Footprint Deep Learning")."""

from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor, nn

from structlayers.base import FlopCount, rows_of
from structlayers.layers.projection import DIAGONAL_INITS, assign_bias, dense_target, init_diagonals_
from structlayers.layers.square import SquareLayer
from structlayers.registry import register


def real_fft_flops(n: int) -> int:
    """FLOPs of one real FFT (or inverse) of length ``n``: half the radix-2 complex count
    ``5 n log2 n`` (the standard model, also used for non-powers of two)."""
    return round(2.5 * n * math.log2(n)) if n > 1 else 0


def spectral_product_flops(n: int) -> int:
    """A complex multiply (6 FLOPs) per ``rfft`` bin of a length-``n`` signal."""
    return 6 * (n // 2 + 1)


def circular_convolve(x: Tensor, kernel: Tensor, n: int) -> Tensor:
    """``(kernel (*) x)`` over the last dimension, both of length ``n``, by real FFTs."""
    if x.numel() == 0:  # FFT libraries reject empty transforms; zeros still connected to the graph
        return x.new_zeros(*x.shape[:-1], n) + (x.sum() + kernel.sum()) * 0
    return torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(kernel, n=n), n=n)


class GatheredLinear(nn.Module):
    """``x @ values[index].T + bias``: a layer whose weight repeats a few values (a circulant or
    Toeplitz matrix) as one gather and a matmul -- the export form of the FFT layers (ONNX has no
    complex tensors), with the same parameters."""

    def __init__(self, values: Tensor, index: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.values = nn.Parameter(values.detach().clone())
        self.register_buffer("index", index.to(values.device))
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.values[self.index], self.bias)


@register("circulant")
class Circulant(SquareLayer):
    """``y = crop(C(c) pad(x)) + b`` with ``C(c)`` the ``n x n`` circulant matrix of ``c``,
    ``n = max(in, out)``; ``n`` (+bias) parameters, ``O(n log n)`` time.

    ``init="linear"``: ``c`` starts with ``nn.Linear``'s entry distribution
    ``U(-1/sqrt(in), 1/sqrt(in))``; ``"identity"``: the identity plus N(0, 1e-2^2) noise (for deep
    stacks, whose product would otherwise shrink geometrically with depth).
    """

    stackable = True

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 init: Annotated[str, DIAGONAL_INITS] = "linear") -> None:
        super().__init__(in_features, out_features)
        init = self.check_word("init", init, DIAGONAL_INITS)
        self.size = max(in_features, out_features)
        self.c = nn.Parameter(torch.empty(self.size))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        init_diagonals_(self.c, 0, init, in_features)

    def forward(self, x: Tensor) -> Tensor:
        y = self.crop(circular_convolve(self.pad(x), self.c, self.size))
        return y + self.bias if self.bias is not None else y

    def _index(self) -> Tensor:
        i = torch.arange(self.size)
        return (i[:, None] - i[None, :]) % self.size

    def export_form(self) -> nn.Module:
        """:class:`GatheredLinear`: ``C(c)`` cut to ``(out, in)`` gathered from ``c``, one matmul."""
        return GatheredLinear(self.c, self._index()[: self.out_features, : self.in_features], self.bias)

    def square_reference(self, z: Tensor) -> Tensor:
        """``z C(c)^T`` with ``C(c)`` gathered from ``c`` in float64 (no FFT)."""
        return z @ self.c.detach().double().cpu()[self._index()].T

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Set ``c`` to the circulant nearest to ``weight`` in Frobenius norm, in closed form
        (T. Chan, 1988, "An Optimal Circulant Preconditioner for Toeplitz Systems"): every entry of
        the ``out x in`` window depends on one ``c_k``, so ``c_k`` is the mean of the entries on
        the wrapped diagonal ``(i - j) mod n = k`` (0 where the window has none)."""
        w, bias = dense_target(self, weight, bias)
        index = self._index()[: self.out_features, : self.in_features].reshape(-1)
        total = torch.zeros(self.size, dtype=torch.float64).index_add_(0, index, w.reshape(-1))
        count = torch.bincount(index, minlength=self.size).double()
        self.c.copy_(total / count.clamp(min=1))
        assign_bias(self, bias)

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        """Per row, an rfft and an irfft of length ``n`` and a complex product per bin.  The kernel's
        own rfft (once per call, independent of the batch) is not counted."""
        rows = rows_of(batch_shape)
        bias = rows * self.out_features if self.bias is not None else 0
        return FlopCount(fft=rows * 2 * real_fft_flops(self.size),
                         elementwise=rows * spectral_product_flops(self.size) + bias)

    def params(self) -> int:
        return self.size + (self.out_features if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, size={self.size}, bias={self.bias is not None}"
