"""AFDF: ``y = Re(x A F D F^-1) + b`` with complex diagonals ``A``, ``D`` and F the unitary DFT.

Input and output are real; the complex diagonals are stored as real ``(N, 2)`` parameters
(real, imaginary), so they count as 2 real parameters each and survive ``state_dict`` as floats.
In a stack, ``cascade`` says where the real part is taken (:class:`~structlayers.base.Cascading`).
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from torch import Tensor, nn

from structlayers.base import FlopCount, rows_of
from structlayers.configs import Words
from structlayers.layers.diagonal import DiagonalTransformLayer
from structlayers.layers.init import init_diagonal
from structlayers.registry import register
from structlayers.transforms.dct import needs_graph
from structlayers.transforms.dft import DFT, dft_matrix
from structlayers.utils.precision import LOW_PRECISION, compute_dtype


def _complex(diagonal: Tensor) -> Tensor:
    """A ``(N, 2)`` real parameter as a complex vector; half-precision parameters are read in float32
    (complex half-precision types do not exist)."""
    return torch.view_as_complex(diagonal.float() if diagonal.dtype in LOW_PRECISION else diagonal)

#: The words of the ``cascade`` option.
CASCADES = Words(("real", "complex"))


@register("afdf")
class AFDF(DiagonalTransformLayer):
    """Complex diagonals around an FFT; real part of the result.  4N (+bias) real parameters.

    The real parts of ``A``, ``D`` follow ``init``; imaginary parts start at 0 (``identity``,
    ``uniform``) or N(0, sigma^2) (``normal``).

    ``cascade`` matters only for factors of a stack: ``"real"`` takes the real part after every
    factor, ``Re(... Re(x A1 F D1 F^-1) P A2 F D2 F^-1 ...)``; ``"complex"`` carries the complex
    signal through the stack and takes the real part once, after the last factor, as in Moczulski
    et al. (2016, Sec. 4), ``Re(x A1 F D1 F^-1 P A2 F D2 F^-1 ...)``: a strictly larger family
    (complex intermediate signals, twice the memory and ~1.5x the FLOPs of every factor after the
    first).  A single layer is the same map either way.  Activations and norms between factors need
    ``"real"``.
    """

    #: Real x times complex A: 2 per entry; complex times complex D: 6 per entry.
    scaling_flops = 8

    def __init__(self, in_features: int, out_features: int, *, cascade: Annotated[str, CASCADES] = "real",
                 **options: Any) -> None:
        """``options``: those of :class:`~structlayers.layers.diagonal.DiagonalTransformLayer`."""
        self.cascade = self.check_word("cascade", cascade, CASCADES)
        super().__init__(in_features, out_features, **options)

    def build_transform(self) -> None:
        self.A = nn.Parameter(torch.empty(self.size, 2))
        self.D = nn.Parameter(torch.empty(self.size, 2))
        self.dft = DFT(self.block, self.groups, self.backend)

    @property
    def transform(self) -> DFT:
        return self.dft

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for diag in (self.A, self.D):
            init_diagonal(diag[:, 0], self.init, self.sigma)
            if self.init == "normal":
                diag[:, 1].normal_(0.0, self.sigma)
            else:
                diag[:, 1].zero_()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _diagonals(self) -> tuple[Tensor, Tensor]:
        return _complex(self.A), _complex(self.D)

    @staticmethod
    def _complex_map(z: Tensor, a: Tensor, d: Tensor, dft: DFT, inner: Tensor | None,
                     backend: str | None = None) -> Tensor:
        """``(dft(z A) P) D`` through ``dft``'s inverse: the complex map before the real part."""
        # A cast and a complex multiply: PyTorch's float-times-complex kernel is ~10x slower.
        z = dft(z.to(a.dtype) * a, backend)
        if inner is not None:
            z = z.index_select(-1, inner)
        return dft.inverse(z * d, backend)

    def square_forward(self, x: Tensor, backend: str | None = None, shift: Tensor | None = None) -> Tensor:
        backend = backend or self.resolve_backend(rows_of(x.shape[:-1]), x.device, compute_dtype(x))
        a, d = self._diagonals()
        if backend == "fft" and self.inner is None and not needs_graph(x, a, d):
            # Inference: both transforms as real FFTs (no complex FFT), in place; training keeps the
            # complex FFT pair, whose autograd backward is cheaper than the real-FFT form's.
            y = self.dft.real_diag_product(x, a, d)
        else:
            inner = self.inner.index if self.inner is not None else None
            y = self._complex_map(x, a, d, self.dft, inner, backend).real
        return y + shift if shift is not None else y.contiguous()

    def _reference_parts(self) -> tuple[Tensor, Tensor, DFT, Tensor | None]:
        a = torch.view_as_complex(self.A.detach().double().cpu().contiguous())
        d = torch.view_as_complex(self.D.detach().double().cpu().contiguous())
        inner = self.inner.index.cpu() if self.inner is not None else None
        return a, d, DFT(self.block, self.groups, "fft"), inner

    def square_reference(self, z: Tensor) -> Tensor:
        """``Re(ifft((fft(z A) P) D))`` with the complex128 FFT (O(N^2 log N) on the identity)."""
        return self._complex_map(z, *self._reference_parts()).real

    # The Cascading protocol (structlayers.base): a stack carries the complex signal when cascade="complex".

    def cascades(self) -> bool:
        return self.cascade == "complex"

    def cascade_forward(self, z: Tensor) -> Tensor:
        backend = self.resolve_backend(rows_of(z.shape[:-1]), z.device, z.real.dtype)
        a, d = self._diagonals()
        y = self._complex_map(z, a, d, self.dft, self.inner.index if self.inner is not None else None, backend)
        return y + self.bias if self.bias is not None else y

    def cascade_reference(self, z: Tensor) -> Tensor:
        y = self._complex_map(z, *self._reference_parts())
        return y + self.bias.detach().double().cpu() if self.bias is not None else y

    def cascade_output(self, z: Tensor) -> Tensor:
        return z.real.contiguous()

    def cascade_flop_count(self, rows: int, wide_input: bool) -> FlopCount:
        """As :meth:`flop_count`, with a complex-times-complex product (6 FLOPs) for ``A`` when the
        input is complex (2 when it is real)."""
        extra = FlopCount(elementwise=4 * rows * self.size) if wide_input else FlopCount()
        return self.flop_count(rows) + extra

    def export_form(self) -> nn.Module:
        """:class:`AFDFRealForm`: the same map in real arithmetic (ONNX has no complex tensors)."""
        return AFDFRealForm(self)

    def transform_matrices(self) -> tuple[Tensor, Tensor]:
        f = torch.block_diag(*[dft_matrix(self.block)] * self.groups)
        return f, f.conj()

    def set_diagonals_(self, a: Tensor, d: Tensor) -> None:
        self.A.copy_(torch.view_as_real(a.to(torch.complex128)))
        self.D.copy_(torch.view_as_real(d.to(torch.complex128)))

    def params(self) -> int:
        return 4 * self.size + (self.out_features if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, cascade={self.cascade!r}"


class AFDFRealForm(nn.Module):
    """An :class:`AFDF` layer computed with real matmuls only, for export.

    With ``F = Fr + i Fi`` the unitary DFT (symmetric, so ``F^-1 = conj(F)``), ``a``, ``d`` the
    complex diagonals and real ``x``: ``u = x a`` is ``(x ar, x ai)``; ``v = u F`` is
    ``(ur Fr - ui Fi, ur Fi + ui Fr)``; ``w = v d`` the complex product; and the output
    ``Re(w conj(F)) = wr Fr + wi Fi``.  Blocks and the inner shuffle act on both parts alike.  The
    diagonals are this module's own parameters (copies of the layer's).
    """

    def __init__(self, layer: AFDF) -> None:
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.size, self.block, self.groups = layer.size, layer.block, layer.groups
        self.A = nn.Parameter(layer.A.detach().clone())
        self.D = nn.Parameter(layer.D.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone()) if layer.bias is not None else None
        f = dft_matrix(layer.block)
        dtype = layer.A.dtype if layer.A.dtype not in LOW_PRECISION else torch.float32
        self.register_buffer("f_real", f.real.to(layer.A.device, dtype))
        self.register_buffer("f_imag", f.imag.to(layer.A.device, dtype))
        self.register_buffer("inner", layer.inner.index.clone() if layer.inner is not None else None)
        self.cascade = layer.cascade

    def _dft(self, re: Tensor, im: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        shape = re.shape
        re, im = re.reshape(-1, self.block), im.reshape(-1, self.block)  # rows and blocks: 2-D matmuls
        fr, fi = self.f_real, (-self.f_imag if inverse else self.f_imag)
        return (re @ fr - im @ fi).reshape(shape), (re @ fi + im @ fr).reshape(shape)

    def _complex_map(self, re: Tensor, im: Tensor | None) -> tuple[Tensor, Tensor]:
        """Real and imaginary parts of ``(((z a) F) P d) conj(F)`` for ``z = re + i im`` (``im``
        ``None``: a real input)."""
        ar, ai = self.A[:, 0], self.A[:, 1]
        if im is None:
            ur, ui = re * ar, re * ai
        else:
            ur, ui = re * ar - im * ai, re * ai + im * ar
        vr, vi = self._dft(ur, ui, inverse=False)
        if self.inner is not None:
            vr, vi = vr.index_select(-1, self.inner), vi.index_select(-1, self.inner)
        dr, di = self.D[:, 0], self.D[:, 1]
        return self._dft(vr * dr - vi * di, vr * di + vi * dr, inverse=True)

    def forward(self, x: Tensor) -> Tensor:
        extra = self.size - self.in_features
        z = torch.nn.functional.pad(x, (0, extra)) if extra else x
        y = self._complex_map(z, None)[0][..., : self.out_features]
        return y + self.bias if self.bias is not None else y

    # The Cascading protocol of a complex cascade in real arithmetic: the wide signal is the real
    # and imaginary parts side by side, ``(..., 2 size)``; a stack's export form shuffles both halves.

    #: Real tensors that make up one wide (complex) signal.
    wide_parts = 2

    def cascades(self) -> bool:
        return self.cascade == "complex"

    def cascade_forward(self, z: Tensor) -> Tensor:
        """The complex map (+ bias) of a real ``(..., size)`` or wide ``(..., 2 size)`` input, wide."""
        re, im = (z, None) if z.shape[-1] == self.size else (z[..., : self.size], z[..., self.size:])
        yr, yi = self._complex_map(re, im)
        return torch.cat([yr + self.bias if self.bias is not None else yr, yi], dim=-1)

    def cascade_output(self, z: Tensor) -> Tensor:
        return z[..., : self.size]
