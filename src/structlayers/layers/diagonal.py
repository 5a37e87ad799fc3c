"""Common structure of ACDC and AFDF: ``y = x A T P D T^-1 (+ b)`` with learned diagonals ``A``,
``D``, a fixed orthogonal transform ``T`` (block-diagonal when ``groups > 1``) and an optional fixed
shuffle ``P`` inside the factor (a riffle there makes the effective weights of a stack look more
like a standard dense initialisation than the near-circulant structure of ``T D T^-1`` alone)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Annotated, ClassVar

import torch
from torch import Tensor, nn

from structlayers.base import FlopCount, rows_of
from structlayers.configs import Words
from structlayers.layers.init import INITS, check_sigma
from structlayers.layers.projection import diagonal_transform_als, observed_target, padded_bias
from structlayers.layers.square import SHUFFLE_WORDS, SquareLayer, square_size
from structlayers.transforms.dct import BACKENDS, DCT
from structlayers.transforms.dft import DFT
from structlayers.transforms.shuffle import Permutation, make_permutation
from structlayers.utils.autotune import cached_backend, choose_backend

#: The words of the ``backend`` option.
BACKEND_WORDS = Words(BACKENDS)
#: Most alternating sweeps of a projection with unobserved (padded) entries.
MASKED_SWEEPS = 400


class DiagonalTransformLayer(SquareLayer):
    """Base of ACDC-like factors; subclasses provide the transform pair and the dense matrices."""

    stackable = True
    traceable = False  # custom autograd functions; the export form (dense matmuls) traces
    #: Whether the dense backend is real matmuls that run natively in half precision (ACDC; AFDF's
    #: are complex, and complex half-precision matmuls do not exist).
    native_dense: bool = False
    #: FLOPs per entry of the two diagonal products ``x A`` and ``(.) D`` together.
    scaling_flops: ClassVar[int]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        init: Annotated[str, INITS] = "normal",
        sigma: float = 1e-2,
        backend: Annotated[str, BACKEND_WORDS] = "fft",
        groups: int = 1,
        pow2_blocks: bool = False,
        inner_shuffle: Annotated[str, SHUFFLE_WORDS] = "none",
        seed: int | None = None,
    ) -> None:
        super().__init__(in_features, out_features)
        init = self.check_word("init", init, INITS)
        check_sigma(self.name, sigma)
        backend = self.check_word("backend", backend, BACKEND_WORDS)
        inner_shuffle = self.check_word("inner_shuffle", inner_shuffle, SHUFFLE_WORDS)
        self.size, self.block = square_size(self.name, in_features, out_features, groups, pow2_blocks)
        self.groups, self.backend, self.init, self.sigma = groups, backend, init, sigma
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.inner = (
            Permutation(make_permutation(inner_shuffle, self.size, generator), inner_shuffle)
            if inner_shuffle != "none"
            else None
        )
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.build_transform()
        self.reset_parameters()

    @abstractmethod
    def build_transform(self) -> None:
        """Create the diagonals and the transform modules (called once from ``__init__``)."""

    @abstractmethod
    def reset_parameters(self) -> None:
        """Initialise the diagonals according to ``self.init`` / ``self.sigma``."""

    @abstractmethod
    def square_forward(self, x: Tensor, backend: str | None = None, shift: Tensor | None = None) -> Tensor:
        """``x A T P D T^-1 (+ shift)`` on the padded square input, with ``backend`` (default:
        resolved); the shift lets a square layer add its bias without another pass."""

    @property
    @abstractmethod
    def transform(self) -> DCT | DFT:
        """The fixed transform ``T`` (block-diagonal over ``groups``), a module made by ``build_transform``."""

    def transform_flops(self, rows: int) -> FlopCount:
        """FLOPs of ``square_forward`` on ``rows`` vectors: ``T`` and ``T^-1`` (matmuls with the dense
        backend) and the two diagonal products."""
        backend = self.flop_backend(rows)
        transforms = 2 * self.transform.flops(rows, backend)
        scalings = self.scaling_flops * rows * self.size
        if backend == "dense":
            return FlopCount(matmul=transforms, elementwise=scalings)
        return FlopCount(fft=transforms, elementwise=scalings)

    def resolve_backend(self, rows: int, device: torch.device, dtype: torch.dtype) -> str:
        """The backend used on ``rows`` vectors: ``fft`` / ``dense`` as given, or the measured
        faster one for ``auto`` (timed once per (size, rows, device, dtype) and cached)."""
        if self.backend != "auto":
            return self.backend
        return choose_backend(self, rows, device, dtype)

    @abstractmethod
    def transform_matrices(self) -> tuple[Tensor, Tensor]:
        """``(T, T^-1)``: the full ``(size, size)`` float64 / complex128 matrices of the transform
        (block-diagonal over ``groups``) with ``transform(x) == x @ T``."""

    @abstractmethod
    def set_diagonals_(self, a: Tensor, d: Tensor) -> None:
        """Set ``A`` and ``D`` from float64 / complex128 vectors of length ``size``."""

    @torch.no_grad()
    def project_(self, weight: Tensor, bias: Tensor | None) -> None:
        """Diagonals by alternating closed-form least squares
        (:func:`~structlayers.layers.projection.diagonal_transform_als`): 20 sweeps when the whole map is
        observed, up to :data:`MASKED_SWEEPS` (until a sweep gains less than 1e-13 relative) when
        padding leaves entries free (``in != out``), where imputation converges slowly.  The bias
        is copied."""
        target, mask = observed_target(weight, self.size)
        transform, inverse = self.transform_matrices()
        shuffle = self.inner.index.cpu() if self.inner is not None else None
        masked = not bool(mask.all())
        a, d = diagonal_transform_als(transform, inverse, target, mask, shuffle=shuffle,
                                      real_part=transform.is_complex(), sweeps=MASKED_SWEEPS if masked else 20,
                                      tol=1e-13 if masked else 0.0)
        self.set_diagonals_(a, d)
        if self.bias is not None:
            self.bias.copy_(padded_bias(bias, self.out_features))

    def low_precision_native(self, rows: int, device: torch.device, dtype: torch.dtype) -> bool:
        """The dense backend of a real transform runs natively in half precision; the FFT never does."""
        return self.native_dense and self.resolve_backend(rows, device, dtype) == "dense"

    def flop_backend(self, rows: int) -> str:
        """The backend whose FLOPs ``flop_count`` reports: for ``auto``, the cached measured choice
        for this layer's device and dtype (never measured here), else ``fft``."""
        if self.backend != "auto":
            return self.backend
        p = self.A
        return cached_backend(self, rows, p.device, p.dtype) or "fft"

    def forward(self, x: Tensor) -> Tensor:
        if x.numel() == 0:
            return self.empty_forward(x)
        z = self.pad(x)
        if self.size == self.out_features:
            return self.square_forward(z, shift=self.bias)
        y = self.crop(self.square_forward(z))
        return y + self.bias if self.bias is not None else y

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        rows = rows_of(batch_shape)
        bias = FlopCount(elementwise=rows * self.out_features if self.bias is not None else 0)
        return self.transform_flops(rows) + bias

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, size={self.size}, groups={self.groups}, backend={self.backend!r}, "
            f"init={self.init!r}, bias={self.bias is not None}"
        )
