"""Shared machinery of the square structured layers: padding/truncation for ``in != out`` and
the block (``groups``) layout.

Dimension change is done by zero-padding the input to a square size ``N >= max(in, out)`` and
keeping the first ``out`` outputs.  The alternative, extra dense ``nn.Linear`` layers that create
or fold the missing dimensions, adds O(N * |in - out|) dense parameters and FLOPs, which defeats
the compression; padding is exact, free, and keeps ``to_dense`` a sub-block of the square map.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from structlayers.base import StructuredLinear, dense_weight_dtype


def square_size(layer: str, in_features: int, out_features: int, groups: int, pow2_blocks: bool) -> tuple[int, int]:
    """``(N, block)``: the padded square size and the length of each of its ``groups`` blocks.

    Blocks have length ``ceil(max(in, out) / groups)``, rounded up to a power of two when
    ``pow2_blocks`` (sizes for which the FFT is fastest).
    """
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"layer {layer!r}: groups must be a positive integer, got {groups!r}")
    need = max(in_features, out_features)
    if groups > need:
        raise ValueError(f"layer {layer!r}: groups={groups} exceeds the layer size {need}")
    block = -(-need // groups)
    if pow2_blocks:
        block = 1 << (block - 1).bit_length()
    return block * groups, block


class SquareLayer(StructuredLinear):
    """A layer computed on a padded square of size ``size``.

    ``square_reference`` is the unfused, float64, CPU evaluation of the square map (no bias) that
    dense forms are built from, kept separate from the optimised ``forward`` so that tests comparing
    ``to_dense()`` with the layer applied to the identity compare two independent computations.
    """

    size: int

    @abstractmethod
    def square_reference(self, z: Tensor) -> Tensor:
        """The square map without bias on float64 CPU rows ``z (..., size)``."""

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        """The reference map applied to the identity, cut to ``(in, out)``, and the layer's own
        ``bias`` (added after the square map).  A stack, whose biases sit between its factors,
        overrides this."""
        m = self.square_reference(torch.eye(self.size, dtype=torch.float64))[: self.in_features, : self.out_features]
        bias = self.bias.detach().clone() if self.bias is not None else None
        return m.T.to(dense_weight_dtype(self)).contiguous(), bias

    def pad(self, x: Tensor) -> Tensor:
        self.check_input(x)
        extra = self.size - self.in_features
        return F.pad(x, (0, extra)) if extra else x

    def crop(self, y: Tensor) -> Tensor:
        return y[..., : self.out_features] if self.size != self.out_features else y
