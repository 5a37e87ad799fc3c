"""Anti-aliased (Gaussian) pooling executed as three one-dimensional contractions.

escnn's ``PointwiseAvgPoolAntialiased3D`` (and a depthwise ``conv3d`` in general) runs the Gaussian
blur + stride as a depthwise ``k^3`` convolution.  On CPU, oneDNN's backward of that strided
depthwise convolution is slow: at the seed-004 shapes it was the largest single convolution call of
the compressed encoders' training step.  The Gaussian factorises,
``exp(-|r|^2 / 2 s^2) = prod_i exp(-r_i^2 / 2 s^2)``, so the pooling is ``P_z (x) P_y (x) P_x`` with
one banded ``n_out x n_in`` matrix per axis (its taps, stride and zero padding).  :func:`blur_pool3d`
applies them as three batched matmuls on the input's own memory layout (contiguous or channels-last,
no transposing copy), and its backward as their transposes.

``atompaint::blur_pool3d`` is a ``torch.library`` operator, so ``FlopCounterMode`` sees it as one
call: its FLOP formula is the depthwise convolution's ``2 k^3`` per output (the count of the linear
map the cost tables use, :mod:`atompaint.encoders.costs`), although the dense banded matrices
execute more multiply-adds (their zeros included).
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from escnn import nn as enn
from torch import Tensor, nn
from torch.utils.flop_counter import register_flop_formula


def gaussian_taps(sigma: float) -> Tensor:
    """The normalised 1D Gaussian of ``2 round(3 sigma) + 1`` taps (float64) whose outer cube is the
    3D Gaussian of escnn's anti-aliased pooling."""
    k = 2 * int(round(3 * sigma)) + 1
    axis = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(axis**2) / (2 * sigma**2))
    return g / g.sum()


def pool_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


@cache
def _axis_matrix(size: int, taps: tuple[float, ...], stride: int, padding: int) -> Tensor:
    """``P`` with ``(P x)[o] = sum_t taps[t] x[stride o - padding + t]`` (zero outside ``x``)."""
    out = pool_output_size(size, len(taps), stride, padding)
    matrix = torch.zeros(out, size, dtype=torch.float64)
    for o in range(out):
        for t, tap in enumerate(taps):
            i = stride * o - padding + t
            if 0 <= i < size:
                matrix[o, i] = tap
    return matrix


def _matrices(shape: list[int], taps: Tensor, stride: list[int], padding: list[int], like: Tensor) -> list[Tensor]:
    key = tuple(taps.tolist())
    return [_axis_matrix(n, key, s, p).to(like) for n, s, p in zip(shape, stride, padding)]


def _is_channels_last(x: Tensor) -> bool:
    return x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()


def _empty_like_layout(x: Tensor, size: list[int]) -> Tensor:
    """An empty ``(B, C, *size)`` tensor in the layout :func:`_apply` gives ``x``'s result."""
    layout = torch.channels_last_3d if _is_channels_last(x) else torch.contiguous_format
    return torch.empty(x.shape[0], x.shape[1], *size, dtype=x.dtype, device=x.device, memory_format=layout)


def _apply(x: Tensor, pz: Tensor, py: Tensor, px: Tensor) -> Tensor:
    """``(P_z (x) P_y (x) P_x) x`` on ``(B, C, Z, Y, X)``, in ``x``'s layout (channels-last or contiguous)."""
    b, c, z, y, w = x.shape
    zo, yo, xo = pz.shape[0], py.shape[0], px.shape[0]
    if _is_channels_last(x):
        t = torch.matmul(pz, x.permute(0, 2, 3, 4, 1).reshape(b, z, y * w * c))
        t = torch.matmul(py, t.view(b * zo, y, w * c))
        t = torch.matmul(px, t.view(b * zo * yo, w, c))
        return t.view(b, zo, yo, xo, c).permute(0, 4, 1, 2, 3)
    t = torch.matmul(pz, x.contiguous().view(b * c, z, y * w))
    t = torch.matmul(py, t.view(b * c * zo, y, w))
    t = t.view(-1, w) @ px.T
    return t.view(b, c, zo, yo, xo)


@torch.library.custom_op("atompaint::blur_pool3d", mutates_args=())
def blur_pool3d(x: Tensor, taps: Tensor, stride: list[int], padding: list[int]) -> Tensor:
    """Depthwise pooling of ``x`` ``(B, C, Z, Y, X)`` with the separable kernel ``taps (x) taps (x) taps``."""
    return _apply(x, *_matrices(list(x.shape[2:]), taps, stride, padding, x))


@blur_pool3d.register_fake
def _(x, taps, stride, padding):
    size = [pool_output_size(n, taps.shape[0], s, p) for n, s, p in zip(x.shape[2:], stride, padding)]
    return _empty_like_layout(x, size)


@torch.library.custom_op("atompaint::blur_pool3d_backward", mutates_args=())
def blur_pool3d_backward(grad: Tensor, taps: Tensor, stride: list[int], padding: list[int],
                         size: list[int]) -> Tensor:
    """The input gradient of :func:`blur_pool3d` on an input of spatial ``size``: the transposed map."""
    return _apply(grad, *(m.T for m in _matrices(size, taps, stride, padding, grad)))


@blur_pool3d_backward.register_fake
def _(grad, taps, stride, padding, size):
    return _empty_like_layout(grad, size)


def _setup(ctx, inputs, output) -> None:
    x, taps, stride, padding = inputs
    ctx.save_for_backward(taps)
    ctx.stride, ctx.padding, ctx.size = stride, padding, list(x.shape[2:])


def _backward(ctx, grad):
    (taps,) = ctx.saved_tensors
    return blur_pool3d_backward(grad, taps, ctx.stride, ctx.padding, ctx.size), None, None, None


blur_pool3d.register_autograd(_backward, setup_context=_setup)


def _pool_flops(out_elements: int, kernel_size: int) -> int:
    return 2 * out_elements * kernel_size**3


@register_flop_formula(torch.ops.atompaint.blur_pool3d)
def _forward_flops(x_shape, taps_shape, *args, out_shape=None, **kwargs) -> int:
    return _pool_flops(int(torch.Size(out_shape).numel()), taps_shape[0])


@register_flop_formula(torch.ops.atompaint.blur_pool3d_backward)
def _backward_flops(grad_shape, taps_shape, *args, out_shape=None, **kwargs) -> int:
    return _pool_flops(int(torch.Size(grad_shape).numel()), taps_shape[0])


class BlurPoolExport(nn.Module):
    """The plain form (ONNX, inference): a depthwise ``conv3d`` with the ``k x k x k`` ``filter``."""

    def __init__(self, filter: Tensor, stride: tuple[int, ...], padding: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("filter", filter.detach().clone()[None, None])
        self.stride, self.padding = tuple(stride), tuple(padding)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        return F.conv3d(x, self.filter.expand(c, 1, *self.filter.shape[2:]), stride=self.stride,
                        padding=self.padding, groups=c)


def gaussian_cube(taps: Tensor) -> Tensor:
    """``taps (x) taps (x) taps``: the 3D kernel of the separable pooling."""
    return taps[:, None, None] * taps[None, :, None] * taps[None, None, :]


class BlurPool3d(enn.PointwiseAvgPoolAntialiased3D):
    """escnn's anti-aliased average pooling (same ``filter`` buffer, state dict and cost kind), run by
    :func:`blur_pool3d`; the taps' outer cube equals escnn's normalised 3D filter."""

    def __init__(self, in_type: enn.FieldType, sigma: float, stride: int = 2, padding: int = 0) -> None:
        super().__init__(in_type, sigma=sigma, stride=stride, padding=padding)
        self.register_buffer("taps", gaussian_taps(sigma).float(), persistent=False)

    def forward(self, input: enn.GeometricTensor) -> enn.GeometricTensor:
        if input.type != self.in_type:
            raise ValueError("input field type does not match the pooling's in_type")
        y = blur_pool3d(input.tensor, self.taps.to(input.tensor.dtype), list(self.stride), list(self.padding))
        return enn.GeometricTensor(y, self.out_type)
