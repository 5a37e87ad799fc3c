"""Orthonormal DCT-II / DCT-III along the last dimension, as a fast transform and as a dense matmul.

Conventions match ``scipy.fft.dct(x, type=2, norm="ortho")``: with ``C`` the orthonormal DCT-II
matrix, ``dct(x) = x @ C`` for row vectors and ``idct(y) = y @ C.T``.

The fast path is Makhoul's algorithm: one reordering gather, one real FFT of length ``n``, one
complex multiply by a precomputed twiddle and one real gather (no flips, concatenations or complex
gathers).  The conjugations Makhoul's algorithm needs are folded into the gathers (``conj(rfft(v))``
is the rfft of ``v`` reversed circularly).  ``C`` is orthogonal, so the gradient of the DCT is the
inverse DCT and vice versa; the autograd functions use that directly instead of differentiating
through the FFT, the gathers and the twiddles.

:func:`spectral_diag` is the middle of an ACDC factor, ``v -> C diag(d) C^T`` expressed on
Makhoul-ordered vectors: the twiddles, normalisations and the diagonal collapse into one rfft, two
complex multiplies, one real scaling and one irfft, with no gathers at all.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from structlayers.utils.precision import float_tables_dtype

BACKENDS = ("fft", "dense", "auto")


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The ``(n, n)`` orthonormal DCT-II matrix ``C`` with ``dct(x) == x @ C`` (built in float64)."""
    idx = torch.arange(n, dtype=torch.float64, device="cpu")
    c = torch.cos(math.pi * (2 * idx[:, None] + 1) * idx[None, :] / (2 * n)) * math.sqrt(2.0 / n)
    c[:, 0] /= math.sqrt(2.0)
    return c.to(dtype)


def dct_flops(n: int, rows: int = 1, backend: str = "fft") -> int:
    """FLOPs of one DCT (or inverse) of length ``n`` applied to ``rows`` vectors.

    ``dense``: a matmul, ``2 n^2`` per row.  ``fft``: the standard real-FFT count
    ``2.5 n log2 n`` plus the twiddle, 3 FLOPs per output (two multiplies and an add); gathers are
    data movement, not arithmetic.  ``auto`` must be resolved to one of these by the caller.
    """
    if backend == "dense":
        return 2 * n * n * rows
    if backend == "fft":
        return round(2.5 * n * math.log2(n) + 3 * n) * rows if n > 1 else 0
    raise ValueError(f"unknown DCT backend {backend!r}; expected 'fft' or 'dense'")


def _tables(n: int) -> dict[str, Tensor]:
    """Gather indices (int64) and twiddles (float64, complex ones as ``(m, 2)``) for length ``n``,
    computed on the CPU whatever the default device (callers move them).

    ``order`` maps ``x`` to Makhoul's ``v = [x0, x2, ..., x3, x1]`` and ``inverse`` maps back.
    ``dct_in`` is ``order`` reversed circularly (so the rfft yields the conjugate spectrum),
    ``dct_out`` picks the outputs from the interleaved (real, imaginary) spectrum; ``idct_in`` pairs
    ``(y_k, y_{n-k})`` as one complex number per bin and ``idct_out`` undoes both the reordering and
    the circular reversal that stands for the conjugation.
    """
    with torch.device("cpu"):
        return _cpu_tables(n)


def _cpu_tables(n: int) -> dict[str, Tensor]:
    m = n // 2 + 1
    order = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n)
    k = torch.arange(m, dtype=torch.float64)
    scale = torch.full((m,), math.sqrt(2.0 / n), dtype=torch.float64)
    scale[0] = math.sqrt(1.0 / n)
    # w_k = exp(-i pi k / 2n); the DCT is y_k = s_k Re(w_k V_k), y_{n-k} = -s_k Im(w_k V_k).
    w = torch.polar(torch.ones(m, dtype=torch.float64), -math.pi * k / (2 * n))
    dct_out = torch.empty(n, dtype=torch.long)
    dct_out[:m] = 2 * torch.arange(m)
    dct_out[m:] = 2 * torch.arange(n - m, 0, -1) + 1
    # The inverse reads Q_k = (w_k / s_k) (y_k + i y_{n-k}); for k = 0 (no partner) it reads
    # (y_0 + i y_0) with the twiddle (1 - i) / (2 s_0), whose product is exactly real.
    inv_tw = w / scale
    inv_tw[0] = complex(0.5, -0.5) / scale[0].item()
    idct_in = torch.stack([torch.arange(m), (n - torch.arange(m)) % n], dim=-1).reshape(-1)
    return {
        "order": order,
        "inverse": inverse,
        "dct_in": order[(n - torch.arange(n)) % n],
        "dct_out": dct_out,
        "dct_tw": torch.view_as_real((w.conj() * scale).resolve_conj()).contiguous(),
        "idct_in": idct_in,
        "idct_out": (n - inverse) % n,
        "idct_tw": torch.view_as_real(inv_tw).contiguous(),
        "w": torch.view_as_real(w).contiguous(),
        "w_conj": torch.view_as_real(w.conj().resolve_conj()).contiguous(),
        "scale2": (scale**2)[torch.where(torch.arange(n) < m, torch.arange(n), n - torch.arange(n))],
    }


_TABLE_NAMES = tuple(_tables(2))


@lru_cache(maxsize=128)
def _cached_tables(n: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
    return {k: (v.to(device) if v.dtype == torch.long else v.to(device, dtype)) for k, v in _tables(n).items()}


def _complex(table: Tensor) -> Tensor:
    return torch.view_as_complex(table)


def _dct_fast(x: Tensor, t: dict[str, Tensor]) -> Tensor:
    spec = torch.fft.rfft(x.index_select(-1, t["dct_in"]), dim=-1) * _complex(t["dct_tw"])
    return torch.view_as_real(spec).flatten(-2).index_select(-1, t["dct_out"])


def _idct_fast(y: Tensor, t: dict[str, Tensor]) -> Tensor:
    n = y.shape[-1]
    pairs = y.index_select(-1, t["idct_in"]).unflatten(-1, (-1, 2))
    spec = torch.view_as_complex(pairs) * _complex(t["idct_tw"])
    return torch.fft.irfft(spec, n=n, dim=-1).index_select(-1, t["idct_out"])


class _DCTFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, tables: dict[str, Tensor], inverse: bool) -> Tensor:  # type: ignore[override]
        ctx.tables = tables
        ctx.inverse = inverse
        return _idct_fast(x, tables) if inverse else _dct_fast(x, tables)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return _DCTFunction.apply(grad.contiguous(), ctx.tables, not ctx.inverse), None, None


def needs_graph(*tensors: Tensor | None) -> bool:
    """Whether autograd must record an op on ``tensors``; when not, the fast paths call their
    kernels directly and skip the ``autograd.Function`` machinery (tens of microseconds a call)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _permute_scale(x: Tensor, index: Tensor, scale: Tensor | None, shift: Tensor | None) -> Tensor:
    out = x.index_select(-1, index)
    if scale is not None:
        out.mul_(scale)
    return out.add_(shift) if shift is not None else out


class _PermuteScaleFunction(torch.autograd.Function):
    """``x[..., index] * scale (+ shift)`` in one buffer; backward recomputes the gather."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, index: Tensor, inverse_index: Tensor, scale: Tensor | None, shift: Tensor | None
    ) -> Tensor:
        ctx.save_for_backward(x, scale)
        ctx.index, ctx.inverse_index = index, inverse_index
        return _permute_scale(x, index, scale, shift)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, scale = ctx.saved_tensors
        n = grad.shape[-1]
        grad_shift = grad.reshape(-1, n).sum(0) if ctx.needs_input_grad[4] else None
        # One gather serves both: with g = grad[..., inverse], the input gradient is
        # g * scale[inverse] and the scale gradient is sum_rows(g * x)[index].
        g = grad.index_select(-1, ctx.inverse_index)
        grad_scale = None
        if ctx.needs_input_grad[3]:
            grad_scale = (g * x).reshape(-1, n).sum(0).index_select(0, ctx.index)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = g.mul_(scale.index_select(0, ctx.inverse_index)) if scale is not None else g
        return grad_x, None, None, grad_scale, grad_shift


def permute_scale(
    x: Tensor, index: Tensor, inverse_index: Tensor, scale: Tensor | None, shift: Tensor | None = None
) -> Tensor:
    """``x[..., index] * scale + shift`` for a permutation ``index`` and vectors ``scale``,
    ``shift`` of the last dimension's length: one output buffer instead of three."""
    if needs_graph(x, scale, shift):
        return _PermuteScaleFunction.apply(x, index, inverse_index, scale, shift)
    return _permute_scale(x, index, scale, shift)


def permute(x: Tensor, index: Tensor, inverse_index: Tensor) -> Tensor:
    """``x[..., index]`` for a permutation ``index`` (``inverse_index`` its inverse), differentiable;
    the backward is one more gather, where autograd's ``index_select`` backward would scatter-add."""
    return permute_scale(x, index, inverse_index, None)


def _spectrum(v: Tensor, t: dict[str, Tensor]) -> Tensor:
    """``Y = w rfft(v)``: the spectrum of Makhoul-ordered rows with the DCT twiddle applied."""
    return torch.fft.rfft(v, dim=-1).mul_(_complex(t["w"]))


def _scaled_inverse(spec: Tensor, gains: Tensor, t: dict[str, Tensor], n: int) -> Tensor:
    """``irfft(conj(w) (Da Re(Y) + i Db Im(Y)))`` for ``Y = spec``, overwriting ``spec``: in place
    on a fresh buffer, so fewer large allocations (and page faults) per call."""
    torch.view_as_real(spec).mul_(gains)
    return torch.fft.irfft(spec.mul_(_complex(t["w_conj"])), n=n, dim=-1)


def _diag_gains(d: Tensor, t: dict[str, Tensor]) -> Tensor:
    """``(..., m, 2)`` real gains ``(d_k, d_{n-k})`` of bin ``k`` for the diagonal ``d (..., n)``
    (``idct_in`` lists exactly those index pairs)."""
    return d.index_select(-1, t["idct_in"]).unflatten(-1, (-1, 2))


class _SpectralDiagFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: Tensor, d: Tensor, tables: dict[str, Tensor]) -> Tensor:  # type: ignore[override]
        gains = _diag_gains(d.detach(), tables)
        spec = _spectrum(v, tables)
        # The spectrum is kept only for the gradient of ``d``.
        keep = ctx.needs_input_grad[1]
        u = _scaled_inverse(spec.clone() if keep else spec, gains, tables, v.shape[-1])
        ctx.tables = tables
        ctx.save_for_backward(spec if keep else None, gains)
        ctx.d_shape = d.shape
        return u

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        spec, gains = ctx.saved_tensors
        t = ctx.tables
        grad_spec = _spectrum(grad.contiguous(), t)
        grad_d = None
        if ctx.needs_input_grad[1]:
            prod = torch.view_as_real(spec) * torch.view_as_real(grad_spec)
            lead = prod.dim() - len(ctx.d_shape) - 1
            per_bin = prod.sum(dim=tuple(range(lead))) if lead > 0 else prod
            grad_d = per_bin.flatten(-2).index_select(-1, t["dct_out"]) * t["scale2"]
            grad_d = grad_d.reshape(ctx.d_shape)
        # The map is symmetric (C diag(d) C^T conjugated by a permutation): its transpose is itself.
        grad_v = _scaled_inverse(grad_spec, gains, t, grad.shape[-1]) if ctx.needs_input_grad[0] else None
        return grad_v, grad_d, None


def spectral_diag(v: Tensor, d: Tensor, tables: dict[str, Tensor]) -> Tensor:
    """``C diag(d) C^T`` on Makhoul-ordered rows: ``spectral_diag(x[order], d)[inverse] == idct(dct(x) d)``.

    ``v`` is ``(..., n)`` or ``(..., blocks, n)`` with ``d`` of shape ``(n,)`` / ``(blocks, n)``;
    the gradients are exact (the backward is the same map plus a per-frequency reduction for ``d``).
    """
    if needs_graph(v, d):
        return _SpectralDiagFunction.apply(v, d, tables)
    return _scaled_inverse(_spectrum(v, tables), _diag_gains(d, tables), tables, v.shape[-1])


def fft_tables(n: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
    """The (cached) gather indices and twiddles of the length-``n`` fast DCT on ``device``."""
    return _cached_tables(n, torch.device(device), dtype)


def _check(x: Tensor) -> None:
    if not x.is_floating_point() or x.is_complex():
        raise ValueError(f"DCT expects a real floating-point tensor, got {x.dtype}")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"DCT needs a non-empty last dimension, got shape {tuple(x.shape)}")


def dct(x: Tensor) -> Tensor:
    """Orthonormal DCT-II of ``x`` along its last dimension (fast path)."""
    _check(x)
    return _DCTFunction.apply(x, _cached_tables(x.shape[-1], x.device, x.dtype), False)


def idct(y: Tensor) -> Tensor:
    """Orthonormal DCT-III (the inverse of :func:`dct`) along the last dimension (fast path)."""
    _check(y)
    return _DCTFunction.apply(y, _cached_tables(y.shape[-1], y.device, y.dtype), True)


class DCT(nn.Module):
    """Orthonormal DCT-II of length ``n`` on the last dimension, in ``blocks`` independent blocks.

    ``backend="fft"`` runs the fast transform; ``backend="dense"`` multiplies by the DCT matrix,
    kept as a buffer (never a parameter, always in the ``state_dict``); ``backend="auto"`` keeps
    both and lets the caller choose per call (``forward(x, backend=...)``).  With ``blocks > 1``
    the last dimension (``n * blocks``) is split into contiguous blocks of length ``n``.
    """

    def __init__(self, n: int, blocks: int = 1, backend: str = "fft") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown DCT backend {backend!r}; expected one of {BACKENDS}")
        if n < 1 or blocks < 1:
            raise ValueError(f"DCT needs n >= 1 and blocks >= 1, got n={n}, blocks={blocks}")
        self.n, self.blocks, self.backend = n, blocks, backend
        # The default device, so that a model built under ``with torch.device("meta")`` (Lightning's
        # measure_flops) or ``"cuda"`` gets its tables there too.
        self._build(torch.get_default_dtype(), torch.get_default_device())

    def _build(self, dtype: torch.dtype, device: torch.device) -> None:
        """(Re)create the tables in ``dtype`` from float64 values, so ``.double()`` stays exact.  The
        matrix follows half-precision types (a native low-precision matmul); the fast path's twiddles
        stay float32 then, as the FFT itself does (:mod:`structlayers.utils.precision`)."""
        if self.backend != "fft":
            self.register_buffer("matrix", dct_matrix(self.n, dtype).to(device))
        if self.backend != "dense":
            tables_dtype = float_tables_dtype(dtype)
            for name, value in _tables(self.n).items():
                value = value.to(device) if value.dtype == torch.long else value.to(device, tables_dtype)
                self.register_buffer(f"_{name}", value, persistent=False)
            # Looked up on every forward: a dict of a dozen module buffers costs ~20 us to rebuild.
            self._fast = {k: self._buffers[f"_{k}"] for k in _TABLE_NAMES}

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        super()._apply(fn, recurse)
        ref = self.matrix if self.backend != "fft" else self._dct_tw
        self._build(ref.dtype, ref.device)
        return self

    def fast_tables(self) -> dict[str, Tensor]:
        """The fast-path tables on this module's device and dtype (``fft`` / ``auto`` backends)."""
        return self._fast

    def resolve(self, backend: str | None) -> str:
        backend = backend or self.backend
        if backend == "auto":
            raise ValueError("DCT backend 'auto' must be resolved to 'fft' or 'dense' by the calling layer")
        if backend not in self.available_backends():
            raise ValueError(f"DCT built with backend={self.backend!r} cannot run backend {backend!r}")
        return backend

    def available_backends(self) -> tuple[str, ...]:
        return ("fft", "dense") if self.backend == "auto" else (self.backend,)

    def _apply_blocks(self, x: Tensor, inverse: bool, backend: str | None) -> Tensor:
        if x.shape[-1] != self.n * self.blocks:
            raise ValueError(f"DCT of size {self.n * self.blocks} got input with last dimension {x.shape[-1]}")
        backend = self.resolve(backend)
        shape = x.shape
        if backend == "dense":
            # Rows (and blocks) flattened: one 2-D matmul, which is also the form exporters and ONNX
            # runtimes handle best (onnxruntime fuses MatMul + BatchNormalization into a 2-D Gemm).
            return (x.reshape(-1, self.n) @ (self.matrix.T if inverse else self.matrix)).reshape(shape)
        if self.blocks > 1:
            x = x.reshape(*shape[:-1], self.blocks, self.n)
        out = _DCTFunction.apply(x, self.fast_tables(), inverse)
        return out.reshape(shape) if self.blocks > 1 else out

    def forward(self, x: Tensor, backend: str | None = None) -> Tensor:
        return self._apply_blocks(x, inverse=False, backend=backend)

    def inverse(self, y: Tensor, backend: str | None = None) -> Tensor:
        return self._apply_blocks(y, inverse=True, backend=backend)

    def matrix_dense(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The full ``(n*blocks, n*blocks)`` block-diagonal DCT matrix (for ``to_dense``)."""
        return torch.block_diag(*[dct_matrix(self.n, dtype)] * self.blocks)

    def flops(self, rows: int, backend: str | None = None) -> int:
        backend = backend or self.backend
        return dct_flops(self.n, rows * self.blocks, "fft" if backend == "auto" else backend)

    def extra_repr(self) -> str:
        return f"n={self.n}, blocks={self.blocks}, backend={self.backend!r}"
