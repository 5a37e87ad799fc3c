"""Unitary DFT along the last dimension, in blocks, as an FFT or as a dense complex matmul."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from structlayers.transforms.dct import BACKENDS


def dft_matrix(n: int) -> Tensor:
    """The ``(n, n)`` unitary DFT matrix ``F`` with ``fft(x, norm="ortho") == x @ F`` (complex128)."""
    k = torch.arange(n, dtype=torch.float64)
    return torch.polar(torch.full((n, n), 1.0 / math.sqrt(n), dtype=torch.float64), -2 * math.pi * k[:, None] * k[None, :] / n)


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

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        super()._apply(fn, recurse)
        if self.backend != "fft":  # rebuild from float64 so that .double() stays exact
            self.matrix = torch.view_as_real(dft_matrix(self.n)).to(self.matrix.device, self.matrix.dtype)
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

    def flops(self, rows: int, backend: str | None = None) -> int:
        backend = backend or self.backend
        return fft_flops(self.n, rows * self.blocks, "fft" if backend == "auto" else backend)

    def extra_repr(self) -> str:
        return f"n={self.n}, blocks={self.blocks}, backend={self.backend!r}"
