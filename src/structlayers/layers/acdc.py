"""ACDC (Moczulski et al., 2016): ``y = x A C D C^-1 + b`` with C the orthonormal DCT-II."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from structlayers.base import device_dtype, rows_of
from structlayers.layers.diagonal import DiagonalTransformLayer
from structlayers.layers.init import init_diagonal
from structlayers.registry import register
from structlayers.transforms.dct import DCT, permute_scale, spectral_diag
from structlayers.utils.precision import compute_dtype


@register("acdc")
class ACDC(DiagonalTransformLayer):
    """Real diagonals ``A``, ``D`` around a DCT; O(N log N) time, 2N (+bias) parameters.

    ``backend``: ``fft`` (fast DCT), ``dense`` (DCT as a matmul with a fixed buffer) or ``auto``
    (whichever is measured faster for the rows, device and dtype of each call; cached).
    ``groups``: block-diagonal DCT over that many blocks.  ``inner_shuffle``: a fixed shuffle
    between ``C`` and ``D``.  ``in != out`` pads the input / truncates the output.

    Without an inner shuffle the ``fft`` path is fused: ``C D C^T`` runs as one rfft, a
    per-frequency scaling and one irfft (:func:`~structlayers.transforms.dct.spectral_diag`), with
    a single gather on each side.
    """

    native_dense = True
    scaling_flops = 2  # real times real, twice

    def build_transform(self) -> None:
        self.A = nn.Parameter(torch.empty(self.size))
        self.D = nn.Parameter(torch.empty(self.size))
        self.dct = DCT(self.block, self.groups, self.backend)

    @property
    def transform(self) -> DCT:
        return self.dct

    def reset_parameters(self) -> None:
        init_diagonal(self.A, self.init, self.sigma)
        init_diagonal(self.D, self.init, self.sigma)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    # The Fusable protocol (structlayers.base): stacks of ACDC factors chain the fused path.

    def fusable(self, rows: int, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether the fused spectral path runs for ``rows`` vectors (fft backend, no inner shuffle)."""
        return self.inner is None and self.resolve_backend(rows, device, dtype) == "fft"

    def fusion_scale(self) -> Tensor:
        return self.A

    def fusion_perms(self) -> tuple[Tensor, Tensor] | None:
        """Makhoul's reordering of every block and its inverse, unless the options rule fusion out."""
        if self.inner is not None or self.backend == "dense":
            return None
        return self._makhoul_perms()

    def _makhoul_perms(self) -> tuple[Tensor, Tensor]:
        """``(order, inverse)`` over the full size: Makhoul's reordering of every block, and its inverse."""
        t = self.dct.fast_tables()
        if self.groups == 1:
            return t["order"], t["inverse"]
        offsets = torch.arange(0, self.size, self.block, device=t["order"].device)[:, None]
        return (offsets + t["order"]).reshape(-1), (offsets + t["inverse"]).reshape(-1)

    def fused_core(self, v: Tensor) -> Tensor:
        """``C D C^T`` on Makhoul-ordered rows ``v (..., size)`` (output Makhoul-ordered too)."""
        if self.groups == 1:
            return spectral_diag(v, self.D, self.dct.fast_tables())
        shape = v.shape
        blocks = v.reshape(*shape[:-1], self.groups, self.block)
        d = self.D.view(self.groups, self.block)
        return spectral_diag(blocks, d, self.dct.fast_tables()).reshape(shape)

    def _fused(self, x: Tensor, shift: Tensor | None) -> Tensor:
        order, inverse = self._makhoul_perms()
        v = permute_scale(x, order, inverse, self.A.index_select(0, order))
        return permute_scale(self.fused_core(v), inverse, order, None, shift)

    def square_forward(self, x: Tensor, backend: str | None = None, shift: Tensor | None = None) -> Tensor:
        backend = backend or self.resolve_backend(rows_of(x.shape[:-1]), x.device, compute_dtype(x))
        if backend == "fft" and self.inner is None:
            # The output gather and the shift share one buffer.
            return self._fused(x, shift)
        z = self.dct(x * self.A, backend)
        if self.inner is not None:
            z = self.inner(z)
        y = self.dct.inverse(z * self.D, backend)
        return y + shift if shift is not None else y

    def square_reference(self, z: Tensor) -> Tensor:
        """``idct((dct(z A) P) D)`` with an unfused float64 FFT DCT: O(N^2 log N) on the identity,
        where multiplying dense factor matrices would be O(N^3)."""
        dct = DCT(self.block, self.groups, "fft").double()
        z = dct(z * self.A.detach().double().cpu())
        if self.inner is not None:
            z = z.index_select(-1, self.inner.index.cpu())
        return dct.inverse(z * self.D.detach().double().cpu())

    def export_form(self) -> ACDC:
        """A copy with the dense backend: the DCT as a matmul with a fixed buffer, exportable."""
        device, dtype = device_dtype(self)
        new = copy.deepcopy(self)
        new.backend = "dense"
        new.dct = DCT(self.block, self.groups, "dense").to(device, dtype)
        new.traceable = True
        return new

    def transform_matrices(self) -> tuple[Tensor, Tensor]:
        c = self.dct.matrix_dense(torch.float64)
        return c, c.T

    def set_diagonals_(self, a: Tensor, d: Tensor) -> None:
        self.A.copy_(a.real)
        self.D.copy_(d.real)

    def params(self) -> int:
        return 2 * self.size + (self.out_features if self.bias is not None else 0)
