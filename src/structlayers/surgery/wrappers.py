"""Convolutions computed by layer plugins: pointwise (1x1) and depthwise-separable (k x k).

A pointwise convolution is a linear map of each pixel's channel vector, so a plugin applies it
directly: the channel dimension is moved last (a view, no copy), the plugin runs on
``(..., spatial, C)`` and the result is moved back.  Accounting therefore sees every spatial
position as a row, and :func:`structlayers.collapse` may swap the inner plugin for an
``nn.Linear``, which this wrapper applies the same way.
"""

from __future__ import annotations

from torch import Tensor, nn


def _tuple(value: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


class PointwiseConv(nn.Module):
    """A 1x1 convolution over ``dims`` spatial dimensions computed by ``layer`` per position.

    ``layer`` maps ``(..., in_channels) -> (..., out_channels)`` (a plugin, or the ``nn.Linear``
    that :func:`~structlayers.collapse` substitutes).  A stride is applied by subsampling the input
    first, exactly as a strided 1x1 convolution does.  Inputs are ``(N, C, *spatial)`` or unbatched
    ``(C, *spatial)``, like ``nn.ConvNd``.
    """

    def __init__(self, layer: nn.Module, in_channels: int, out_channels: int, dims: int = 2,
                 stride: int | tuple[int, ...] = 1) -> None:
        super().__init__()
        self.layer = layer
        self.in_channels, self.out_channels, self.dims = in_channels, out_channels, dims
        self.stride = _tuple(stride, dims)
        if len(self.stride) != dims or any(s < 1 for s in self.stride):
            raise ValueError(f"stride must be {dims} positive integers, got {stride!r}")

    def forward(self, x: Tensor) -> Tensor:
        channel = -(self.dims + 1)
        if x.dim() not in (self.dims + 1, self.dims + 2) or x.shape[channel] != self.in_channels:
            raise ValueError(
                f"PointwiseConv expects (N, {self.in_channels}, <{self.dims} spatial dims>), got {tuple(x.shape)}"
            )
        if any(s != 1 for s in self.stride):
            x = x[(..., *(slice(None, None, s) for s in self.stride))]
        # Non-negative dims: ONNX's Transpose rejects the negative permutation entries that
        # negative movedim arguments trace to.
        channel, last = x.dim() + channel, x.dim() - 1
        return self.layer(x.movedim(channel, last)).movedim(last, channel)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, dims={self.dims}, stride={self.stride}"


class SeparableConv(nn.Module):
    """A depthwise ``k x k`` convolution (one filter per input channel, holding the original
    convolution's stride, padding and dilation) followed by a :class:`PointwiseConv`."""

    def __init__(self, depthwise: nn.modules.conv._ConvNd, pointwise: PointwiseConv) -> None:
        super().__init__()
        if depthwise.groups != depthwise.in_channels or depthwise.out_channels != depthwise.in_channels:
            raise ValueError("SeparableConv: the depthwise convolution must have groups == in_channels == out_channels")
        if pointwise.in_channels != depthwise.out_channels:
            raise ValueError(
                f"SeparableConv: pointwise expects {pointwise.in_channels} channels, "
                f"depthwise gives {depthwise.out_channels}"
            )
        self.depthwise = depthwise
        self.pointwise = pointwise

    @property
    def in_channels(self) -> int:
        return self.depthwise.in_channels

    @property
    def out_channels(self) -> int:
        return self.pointwise.out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))
