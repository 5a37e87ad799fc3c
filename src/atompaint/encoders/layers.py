"""escnn building blocks: Fourier activations, conv-BN-activation layers, aligned pooling and the
rotation-invariant read-out that ends every encoder."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from escnn import nn as enn
from torch import Tensor, nn

from atompaint.encoders.fields import (
    aligned_pool_padding,
    fields_per_irrep,
    so3_grid,
    so3_gspace,
    spectral_irreps,
)
from atompaint.encoders.pooling import BlurPool3d, gaussian_taps
from atompaint.encoders.separable import ConvSpec, make_conv

_FIRST_HERMITE_COEFF = math.sqrt(2) * math.pi ** (-1 / 4)


class _FirstHermite(torch.autograd.Function):
    """``c x exp(-x^2/2)`` in two passes forward and one backward (``c exp(-x^2/2) (1 - x^2)``),
    keeping only ``x`` and the exponential for the backward pass instead of autograd's chain of
    square, scale, exp and two products (each a pass over the Fourier grid's samples)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        e = torch.exp(x.square().mul_(-0.5))
        ctx.save_for_backward(x, e)
        return e.mul(x).mul_(_FIRST_HERMITE_COEFF)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, e = ctx.saved_tensors
        return x.square().neg_().add_(1).mul_(e).mul_(grad).mul_(_FIRST_HERMITE_COEFF)


def first_hermite(x: Tensor) -> Tensor:
    """The first (normalized) Hermite function ``sqrt(2) pi^-1/4 x exp(-x^2/2)``.

    Paired with a tensor-product nonlinearity it is the activation of the "gamma" block
    (:mod:`atompaint.encoders.blocks`).
    """
    return _FirstHermite.apply(x)


def leaky_hard_shrink(x: Tensor, cutoff: float = 2.0, slope: float = 0.1) -> Tensor:
    """Hard shrinkage with a leaky linear part: zero-mean friendly, used by the "alpha" block."""
    return F.hardshrink(x, cutoff) + slope * x


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "hermite": first_hermite,
    "leaky_hardshrink": leaky_hard_shrink,
}


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    """Look up a pointwise activation by name (``relu``, ``elu``, ``hermite``, ...)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def fourier_pointwise(x: Tensor, A: Tensor, Ainv: Tensor, function: Callable[[Tensor], Tensor],
                      channels: int) -> Tensor:
    """``Ainv f(A x_c)`` for each of the ``channels`` fields of ``x (B, channels * F, *spatial)``.

    The transforms run as matrix products over the flattened voxels (``(G, F) @ (F, voxels)`` per
    field), which keeps the voxels contiguous; escnn's ``einsum('bcf...,gf->bcg...')`` permutes them
    and is 2-3x slower on CPU for the same FLOPs.
    """
    b, _, *spatial = x.shape
    fields = x.reshape(b, channels, A.shape[1], -1)
    samples = torch.matmul(A, fields)
    return torch.matmul(Ainv, function(samples)).reshape(b, channels * Ainv.shape[0], *spatial)


#: Grid samples per block of the fused Fourier activation (:class:`_FusedFourierPointwise`): a block of
#: fields x voxels whose samples (96 per field and voxel at band limit 2) stay in a 1 MiB L2 cache from
#: the transform through the function to the transform back.
FOURIER_BLOCK_SAMPLES = 3 * 2**16
#: Voxels per block at most: long enough runs for the matrix products, few enough that a block holds
#: several fields (512 voxels x 4 fields ran 1.1x faster than 256 x 32 and 2048 x 1, one thread).
FOURIER_BLOCK_VOXELS = 512


def _fourier_blocks(fields: int, samples: int, voxels: int) -> Iterator[tuple[slice, slice]]:
    """``(fields, voxels)`` slices of the blocks of :class:`_FusedFourierPointwise`, in a fixed order."""
    width = min(voxels, FOURIER_BLOCK_VOXELS)
    rows = max(1, FOURIER_BLOCK_SAMPLES // (samples * width))
    for row in range(0, fields, rows):
        for start in range(0, voxels, width):
            yield slice(row, row + rows), slice(start, start + width)


def _hermite_and_derivative(s: Tensor) -> tuple[Tensor, Tensor]:
    e = torch.exp(s.square().mul_(-0.5))
    return e.mul(s).mul_(_FIRST_HERMITE_COEFF), s.square().neg_().add_(1).mul_(e).mul_(_FIRST_HERMITE_COEFF)


def _elu_and_derivative(s: Tensor) -> tuple[Tensor, Tensor]:
    # f' = 1 for s > 0, else f + 1 = exp(s) <= 1: min(f + 1, 1), two cheap passes (torch.where with a
    # scalar branch took longer than the ELU itself).
    y = F.elu(s)
    return y, torch.add(y, 1).clamp_(max=1.0)


#: ``f(s), f'(s)`` in one pass for the activations that have it written out; the others get ``f'`` from
#: autograd (:func:`_value_and_derivative`).
_WITH_DERIVATIVE: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "hermite": _hermite_and_derivative,
    "elu": _elu_and_derivative,
}


def _value_and_derivative(name: str, s: Tensor) -> tuple[Tensor, Tensor]:
    if name in _WITH_DERIVATIVE:
        return _WITH_DERIVATIVE[name](s)
    with torch.enable_grad():
        s = s.detach().requires_grad_()
        y = activation_fn(name)(s)
        (d,) = torch.autograd.grad(y, s, torch.ones_like(y))
    return y.detach(), d


class _FusedFourierPointwise(torch.autograd.Function):
    """:func:`fourier_pointwise` for training, in blocks of fields x voxels (:func:`_fourier_blocks`):
    per block the transform, ``f`` and ``f'`` (saved, one tensor per block: the only stored
    intermediate) and the transform back, written into its place in the output; in the backward pass
    ``A^T (f'(s) * (Ainv^T g))`` per block.  Autograd instead wrote every whole intermediate (the
    samples, ``f`` and its parts) to memory and read it back."""

    @staticmethod
    def forward(ctx, x: Tensor, A: Tensor, Ainv: Tensor, function: str, channels: int) -> Tensor:
        b, _, *spatial = x.shape
        fields = x.reshape(b * channels, A.shape[1], -1)
        out = fields.new_empty(b * channels, Ainv.shape[0], fields.shape[-1])
        A, Ainv = A.to(x.dtype), Ainv.to(x.dtype)
        derivatives = []
        # In the input's precision (under autocast too): every block is written into the output in place.
        with torch.autocast(x.device.type, enabled=False):
            for rows, block in _fourier_blocks(len(fields), A.shape[0], fields.shape[-1]):
                part = fields[rows, :, block]
                y, d = _value_and_derivative(function, torch.bmm(A.expand(len(part), *A.shape), part))
                derivatives.append(d)
                torch.bmm(Ainv.expand(len(part), *Ainv.shape), y, out=out[rows, :, block])
        ctx.save_for_backward(A, Ainv, *derivatives)
        ctx.input_shape = x.shape
        return out.view(b, -1, *spatial)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        A, Ainv, *derivatives = ctx.saved_tensors
        b, c, *spatial = ctx.input_shape
        grad = grad.reshape(b * c // A.shape[1], Ainv.shape[0], -1).to(A.dtype)
        grad_in = grad.new_empty(grad.shape[0], A.shape[1], grad.shape[-1])
        a_t, ainv_t = A.T, Ainv.T
        blocks = _fourier_blocks(len(grad), A.shape[0], grad.shape[-1])
        with torch.autocast(grad.device.type, enabled=False):
            for (rows, block), d in zip(blocks, derivatives, strict=True):
                part = grad[rows, :, block]
                samples = torch.bmm(ainv_t.expand(len(part), *ainv_t.shape), part).mul_(d)
                torch.bmm(a_t.expand(len(part), *a_t.shape), samples, out=grad_in[rows, :, block])
        return grad_in.view(ctx.input_shape), None, None, None, None


class FourierActivation(enn.FourierPointwise):
    """A pointwise nonlinearity applied on an SO(3) grid: inverse Fourier transform, ``function``
    on every sample, Fourier transform back.

    escnn's own class only knows a few functions by string; this one takes any of
    :data:`ACTIVATIONS` (e.g. the first Hermite function), and computes the transforms as matrix
    products over contiguous voxels (:func:`fourier_pointwise`); in training, fused in voxel blocks
    with ``f'`` the only stored intermediate (:class:`_FusedFourierPointwise`).
    """

    def __init__(self, channels: int, band_limit: int, grid_size: int, function: str = "elu") -> None:
        gs = so3_gspace()
        super().__init__(
            gs, channels, spectral_irreps(band_limit), type="thomson_cube", N=grid_size,
            function="p_relu", inplace=False,
        )
        self.function_name = function
        self._function = activation_fn(function)
        # escnn rebuilds the grid from these arguments; keep them for export and repr.
        self.grid_size = grid_size
        assert len(so3_grid(grid_size)) == self.A.shape[0]

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        if x.type != self.in_type:
            raise ValueError("input field type does not match the activation's in_type")
        t = x.tensor
        if torch.is_grad_enabled() and t.requires_grad and not (self.A.requires_grad or self.Ainv.requires_grad):
            y = _FusedFourierPointwise.apply(t, self.A, self.Ainv, self.function_name, len(self.in_type))
        else:
            y = fourier_pointwise(t, self.A, self.Ainv, self._function, len(self.in_type))
        return enn.GeometricTensor(y, self.out_type, x.coords)

    def extra_repr(self) -> str:
        return f"function={self.function_name}, grid=thomson_cube(N={self.grid_size})"


class IIDBatchNorm(enn.IIDBatchNorm3d):
    """escnn's ``IIDBatchNorm3d`` (same parameters, buffers, statistics and export) with a fused
    forward pass for uniform field types: the batch statistics (which escnn detaches from the graph)
    as a mean and a sum of centred squares per component, then one ``addcmul`` ``x * scale + shift``
    per element, where escnn centres, scales, shifts and copies the output in separate passes; other
    field types use escnn's forward."""

    def forward(self, input: enn.GeometricTensor) -> enn.GeometricTensor:
        if input.type != self.in_type:
            raise ValueError("input field type does not match the batch norm's in_type")
        if len(self._sizes) != 1 or not self.affine:
            return super().forward(input)
        (name, size), key = self._sizes[0], self._escape_name(self._sizes[0][0])
        x = input.tensor.contiguous()
        b, spatial = x.shape[0], x.shape[2:]
        fields = x.view(b, -1, size, *spatial)
        trivial = self._has_trivial[name]
        if self.training:
            self.num_batches_tracked += 1
        if self.training or not self.track_running_stats:
            with torch.no_grad():
                # Per component over batch and voxels, as rows (B, C * size, V); the variance in two passes
                # (mean, then centred squares), 2-4x faster than torch.var over the strided axes.
                rows = x.view(b, fields.shape[1] * size, -1)
                component_means = rows.mean(dim=(0, 2), keepdim=True)
                squares = (rows - component_means).square_().sum(dim=(0, 2))
                component_means = component_means.view(-1, size)
                means = (component_means @ getattr(self, f"{key}_avg").T) if trivial else None
                # The variance about the trivial projection's mean equals the variance about the sample mean.
                count = rows.shape[0] * rows.shape[2]
                variances = squares.div_(count - 1).view(-1, size).mean(dim=1, keepdim=True)
            if self.training and self.track_running_stats:
                factor = (1.0 / self.num_batches_tracked.item()) if self.momentum is None else self.momentum
                running_means, running_vars = self._get_running_stats(name)
                running_vars.mul_(1 - factor).add_(factor * variances)
                if trivial:
                    running_means.mul_(1 - factor).add_(factor * means)
        else:
            means, variances = self._get_running_stats(name)
        scales = getattr(self, f"{key}_weight") / (variances + self.eps).sqrt()  # (C, 1)
        shift = None
        if trivial:  # escnn's own expression for the bias in the field basis
            bias = torch.einsum("ij,cj->ci", getattr(self, f"{key}_change_of_basis"), getattr(self, f"{key}_bias"))
            shift = bias - means * scales
        view = (1, scales.shape[0], -1, *(1,) * len(spatial))
        y = fields * scales.view(view) if shift is None else torch.addcmul(shift.view(view), fields, scales.view(view))
        return enn.GeometricTensor(y.view_as(x), self.out_type, input.coords)


def gate_field_type(field_type: enn.FieldType) -> enn.FieldType:
    """``field_type`` preceded by one scalar gate per field, the input layout of a gated nonlinearity."""
    gs = field_type.gspace
    return enn.FieldType(gs, len(field_type) * [gs.trivial_repr] + list(field_type.representations))


def conv_bn_act(
    in_type: enn.FieldType,
    out_type: enn.FieldType,
    *,
    band_limit: int,
    grid_size: int,
    activation: str,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int = 0,
    conv: ConvSpec | None = None,
) -> enn.SequentialModule:
    """Equivariant 3D convolution (dense or separable, per ``conv``), IID batch norm, Fourier activation.

    The convolution has no bias because the batch norm re-centres its output anyway.
    """
    return enn.SequentialModule(
        make_conv(in_type, out_type, conv or ConvSpec(), kernel_size=kernel_size, stride=stride, padding=padding),
        IIDBatchNorm(out_type),
        FourierActivation(len(out_type), band_limit, grid_size, activation),
    )


def aligned_blur_pool(field_type: enn.FieldType, size: int, sigma: float = 0.33) -> BlurPool3d:
    """Anti-aliased (Gaussian) stride-2 average pooling whose padding keeps odd grids centred.

    Averaging acts on space only, so it is equivariant for any field type; the Gaussian is
    symmetric under the cube's rotations and the centred grid makes the down-sampling commute
    with 90-degree rotations exactly.
    """
    padding = aligned_pool_padding(size, len(gaussian_taps(sigma)), 2)
    return BlurPool3d(field_type, sigma=sigma, stride=2, padding=padding)


class InvariantReadout(nn.Module):
    """Rotation-invariant features of a (spatially pooled) field vector: per irrep copy its scalar
    (for ``rho_0``) or its Euclidean norm (for ``rho_l``, ``l > 0``).

    The norm of an irrep block is preserved by every rotation, so the output is exactly invariant
    (not just up to the sampling of a Fourier grid); for a spectral regular field this is the
    band-limited power spectrum of the function it encodes.  Plain PyTorch, so it exports as is.
    """

    def __init__(self, field_type: enn.FieldType, eps: float = 1e-8) -> None:
        super().__init__()
        dims = fields_per_irrep(field_type)
        self.in_features = field_type.size
        self.out_features = len(dims)
        self.eps = eps
        offsets = [0]
        for d in dims[:-1]:
            offsets.append(offsets[-1] + d)
        self._dims = sorted(set(dims))
        for d in self._dims:
            index = torch.tensor([[o + k for k in range(d)] for o, dd in zip(offsets, dims) if dd == d])
            self.register_buffer(f"index_{d}", index, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` is ``(B, fiber)``; returns ``(B, out_features)``."""
        parts = []
        for d in self._dims:
            block = x[:, getattr(self, f"index_{d}")]
            if d == 1:
                parts.append(block[..., 0])
            else:
                parts.append(torch.sqrt(block.pow(2).sum(dim=-1) + self.eps))
        return torch.cat(parts, dim=1)
