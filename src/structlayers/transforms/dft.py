"""Unitary DFT along the last dimension, in blocks, as an FFT or as a dense complex matmul."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from structlayers.transforms.dct import BACKENDS
from structlayers.utils.precision import float_tables_dtype


def dft_matrix(n: int) -> Tensor:
    """The ``(n, n)`` unitary DFT matrix ``F`` with ``fft(x, norm="ortho") == x @ F`` (complex128)."""
    k = torch.arange(n, dtype=torch.float64)
    return torch.polar(torch.full((n, n), 1.0 / math.sqrt(n), dtype=torch.float64),
                       -2 * math.pi * k[:, None] * k[None, :] / n)


def fft_flops(n: int, rows: int = 1, backend: str = "fft") -> int:
    """Real FLOPs of one complex DFT of length ``n`` on ``rows`` vectors.

    ``fft``: the standard radix-2 count ``5 n log2 n``; ``dense``: a complex matmul is four real
    ones, ``8 n^2`` per row.
    """
    if backend == "dense":
        return 8 * n * n * rows
    if backend == "fft":
        return round(5 * n * math.log2(n)) * rows if n > 1 else 0
    raise ValueError(f"unknown DFT backend {backend!r}; expected one of {BACKENDS}")


class DFT(nn.Module):
    """Unitary DFT of length ``n`` over ``blocks`` contiguous blocks of the last dimension.

    The dense backend keeps the DFT matrix as a real ``(n, n, 2)`` buffer (so ``.double()`` and
    ``state_dict`` treat it like any float buffer); ``auto`` keeps it too and runs whichever backend
    the caller passes per call.
    """

    def __init__(self, n: int, blocks: int = 1, backend: str = "fft") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown DFT backend {backend!r}; expected one of {BACKENDS}")
        self.n, self.blocks, self.backend = n, blocks, backend
        if backend != "fft":
            self.register_buffer("matrix", torch.view_as_real(dft_matrix(n)).to(torch.get_default_dtype()))
        if backend != "dense":
            pairs, pq_map = _pq_tables(n)
            self.register_buffer("_pairs", pairs, persistent=False)
            self.register_buffer("_pq_map", pq_map.to(torch.get_default_dtype()), persistent=False)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        super()._apply(fn, recurse)
        # Rebuilt from float64 so that .double() stays exact; float32 for half-precision types, which
        # have no complex counterpart (:mod:`structlayers.utils.precision`).
        if self.backend != "fft":
            self.matrix = torch.view_as_real(dft_matrix(self.n)).to(self.matrix.device,
                                                                   float_tables_dtype(self.matrix.dtype))
        if self.backend != "dense":
            self._pq_map = _pq_tables(self.n)[1].to(self._pq_map.device, float_tables_dtype(self._pq_map.dtype))
        return self

    def resolve(self, backend: str | None) -> str:
        backend = backend or self.backend
        if backend == "auto" or (self.backend != "auto" and backend != self.backend):
            raise ValueError(f"DFT built with backend={self.backend!r} cannot run backend {backend!r}")
        return backend

    def _run(self, x: Tensor, inverse: bool, backend: str | None = None) -> Tensor:
        shape = x.shape
        if self.blocks > 1:
            x = x.reshape(*shape[:-1], self.blocks, self.n)
        if self.resolve(backend) == "dense":
            f = torch.view_as_complex(self.matrix)
            out = x @ (f.conj() if inverse else f)
        else:
            out = torch.fft.ifft(x, dim=-1, norm="ortho") if inverse else torch.fft.fft(x, dim=-1, norm="ortho")
        return out.reshape(shape)

    def forward(self, x: Tensor, backend: str | None = None) -> Tensor:
        return self._run(x, inverse=False, backend=backend)

    def inverse(self, x: Tensor, backend: str | None = None) -> Tensor:
        return self._run(x, inverse=True, backend=backend)

    def real_diag_product(self, x: Tensor, a: Tensor, d: Tensor) -> Tensor:
        """``Re(inverse(d * forward(x * a)))`` for real ``x`` and complex diagonals ``a``, ``d`` of
        length ``n * blocks``, by :func:`real_diag_dft_diag` (graph-free, fft backend)."""
        self.resolve("fft")
        if self.blocks == 1:
            return real_diag_dft_diag(x, a, d, self._pairs, self._pq_map)
        blocks = x.reshape(*x.shape[:-1], self.blocks, self.n)
        a, d = a.view(self.blocks, self.n), d.view(self.blocks, self.n)
        return real_diag_dft_diag(blocks, a, d, self._pairs, self._pq_map).reshape(x.shape)

    def flops(self, rows: int, backend: str | None = None) -> int:
        backend = backend or self.backend
        return fft_flops(self.n, rows * self.blocks, "fft" if backend == "auto" else backend)

    def extra_repr(self) -> str:
        return f"n={self.n}, blocks={self.blocks}, backend={self.backend!r}"


def real_diag_dft_diag(x: Tensor, a: Tensor, d: Tensor, pairs: Tensor, pq_map: Tensor) -> Tensor:
    """``Re(ifft(d * fft(x * a)))`` with the unitary DFT, for real rows ``x (..., n)`` and complex
    diagonals ``a``, ``d`` of shape ``(n,)`` (or ``(blocks, n)`` with ``x (..., blocks, n)``);
    graph-free (it works in place), for inference.  ``pairs`` and ``pq_map`` are
    :func:`_pq_tables` on the right device.

    As ``x`` is real, ``fft(x a) = R1 + i R2`` with ``R1 = rfft(x Re a)``, ``R2 = rfft(x Im a)``,
    whose negative frequencies are the conjugates of the positive ones.  The Hermitian part of
    ``d * fft(x a)``, all that a real output needs, is then ``R1 p + R2 q`` per bin ``k < n/2 + 1``
    with ``p = (d_k + conj(d_-k)) / 2`` and ``q = i (d_k - conj(d_-k)) / 2``: one batched
    real FFT (half the work of a complex one) and one inverse real FFT, with no complex FFT and no
    gather of spectra.
    """
    n = x.shape[-1]
    m = n // 2 + 1
    # (2, ..., n): Re a, Im a, made contiguous (tiny) so the big multiply runs on unit strides.
    parts = torch.view_as_real(a).movedim(-1, 0).contiguous()
    parts = parts.reshape(2, *([1] * (x.dim() - a.dim())), *a.shape)
    spectra = torch.fft.rfft(x.unsqueeze(0) * parts, dim=-1, norm="ortho")
    # (p, q) from (Re d_k, Im d_k, Re d_-k, Im d_-k) by one fixed 4 x 4 real map.
    quads = torch.view_as_real(d).index_select(-2, pairs).reshape(*d.shape[:-1], m, 4)
    pq = torch.view_as_complex((quads @ pq_map).reshape(*d.shape[:-1], m, 2, 2))
    return torch.fft.irfft(spectra[0].mul_(pq[..., 0]).addcmul_(spectra[1], pq[..., 1]), n=n, dim=-1, norm="ortho")


def _pq_tables(n: int) -> tuple[Tensor, Tensor]:
    """The bin pairs ``(k, -k)`` and the float64 map whose columns (Re p, Im p, Re q, Im q) are
    functions of the rows (Re d_k, Im d_k, Re d_-k, Im d_-k)."""
    k = torch.arange(n // 2 + 1)
    pairs = torch.stack([k, (n - k) % n], dim=-1).reshape(-1)
    pq_map = 0.5 * torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, -1.0, 0.0], [1.0, 0.0, 0.0, -1.0],
                                 [0.0, -1.0, -1.0, 0.0]], dtype=torch.float64)
    return pairs, pq_map
