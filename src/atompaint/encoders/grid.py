"""Grid-domain separable encoders (``conv: grid``): features on the 24 rotations of the cube.

Instead of Fourier coefficients of functions on SO(3) (spectral regular fields, with a Fourier
transform to a grid and back around every nonlinearity), every channel holds one number per element
of a finite rotation grid ``G`` and voxel, ``f[c, g, x]``: a group-convolutional network on
``Z^3 x| G`` (Cohen & Welling, ICML 2016; the cube group in 3D: Worrall & Brostow, "CubeNet",
ECCV 2018).  ``G`` is escnn's ``'cube'`` grid of SO(3) (:func:`cube_group`), the 24 rotations
that map the voxel grid onto itself, so a rotation ``r`` of the input in that group permutes the
features exactly, ``f[c, g, x] -> f[c, r^-1 g, r^-1 x]``, and pointwise nonlinearities, batch
norm and pooling commute with it; other rotations are matched only approximately (the grid is
coarse: 90 degrees apart).

A convolution is separable in the sense of PONITA (Bekkers et al., ICLR 2024) and of separable
group convolutions (Knigge, Romero & Bekkers, ICML 2022):

1. :class:`GridDepthwise`: a spatial depthwise convolution, one kernel ``w_c`` per channel, applied
   to orientation ``g`` rotated by ``g`` (``sum_y w_c(g^-1 (y - x)) f[c, g, y]``),
2. :class:`OrientationConv`: a convolution over the orientations, per channel and voxel
   (``sum_h a_c(g^-1 h) f[c, h, x]``, 24 weights per channel),
3. :class:`GridMixing`: a pointwise channel mixing shared by every orientation and voxel, any
   structlayers plugin (dense, ACDC, low rank, ...).

The first layer lifts scalar input channels onto the grid (:class:`GridLift`, a full
convolution with the kernel rotated by each ``g``).  Every unit reports its cost kind and forward
FLOPs (:mod:`atompaint.encoders.costs` counts it as it counts escnn modules) and exports to plain
PyTorch (rotated kernels expanded into ``nn.Conv3d`` weights, the mixing plugin kept structured, so
:func:`structlayers.collapse` chooses its form like in the other encoders).  Tensors are
``(B, C * 24, D, H, W)``, channel-major.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atompaint.encoders.fields import aligned_pool_padding
from atompaint.encoders.mixing import MixingSpec, build_map
from atompaint.encoders.pooling import BlurPoolExport, blur_pool3d, gaussian_cube, gaussian_taps
from structlayers.base import FlopCount, linear_flops


@lru_cache(maxsize=1)
def cube_group() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """escnn's ``'cube'`` grid of SO(3): ``(matrices (24, 3, 3) int, cayley (24, 24), inverse (24,))``
    with ``matrices[cayley[g, h]] = matrices[g] @ matrices[h]``."""
    from escnn.group import so3_group

    matrices = np.array([np.rint(e.to("MAT")) for e in so3_group(1).grid("cube")], dtype=np.int64)
    index = {m.tobytes(): i for i, m in enumerate(matrices)}
    cayley = np.array([[index[(a @ b).tobytes()] for b in matrices] for a in matrices])
    identity = index[np.eye(3, dtype=np.int64).tobytes()]
    inverse = np.array([int(np.nonzero(row == identity)[0][0]) for row in cayley])
    return matrices, cayley, inverse


GRID_SIZE = 24


def identity_element() -> int:
    """The index of the identity in :func:`cube_group`."""
    matrices = cube_group()[0]
    return int(next(i for i, m in enumerate(matrices) if np.array_equal(m, np.eye(3))))


def rotation_index(size: int, matrix: np.ndarray) -> Tensor:
    """Flat indices ``idx`` with ``rotated.flatten() = volume.flatten()[idx]`` for a centred
    ``size^3`` cube rotated by ``matrix``: ``rotated(z) = volume(matrix^-1 z)``, axes in tensor order."""
    axis = np.arange(size) - (size - 1) / 2
    z = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    source = np.rint(z @ matrix + (size - 1) / 2).astype(np.int64)  # matrix^-1 z = matrix^T z, row form
    return torch.from_numpy(np.ravel_multi_index(source.T, (size, size, size)))


def rotate_volume(x: Tensor, matrix: np.ndarray) -> Tensor:
    """``x (..., L, L, L)`` rotated by a cube rotation (see :func:`rotation_index`)."""
    size = x.shape[-1]
    return x.flatten(-3)[..., rotation_index(size, matrix).to(x.device)].view_as(x)


def rotate_orientations(fields: Tensor, element: int) -> Tensor:
    """What a rotation by cube element ``r`` does to grid features ``(B, C * 24, ...)``:
    ``f[c, g] -> f[c, r^-1 g]``."""
    _, cayley, inverse = cube_group()
    b, channels = fields.shape[0], fields.shape[1] // GRID_SIZE
    perm = torch.from_numpy(cayley[inverse[element]]).to(fields.device)
    return fields.view(b, channels, GRID_SIZE, *fields.shape[2:])[:, :, perm].reshape(fields.shape)


class GridModule(nn.Module, ABC):
    """A unit of a grid encoder: its cost kind (:data:`atompaint.encoders.costs.COST_KINDS`), forward
    FLOPs of one call, and plain-PyTorch export (by default an eval-mode copy)."""

    cost_kind = ""

    @abstractmethod
    def flop_count(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
        """Forward FLOPs of one call on an input of ``x_shape`` giving ``y_shape``."""

    def export(self) -> nn.Module:
        return copy.deepcopy(self).eval()


class _RotatedKernels(GridModule):
    """Shared by lifting and depthwise convolutions: the learned kernels rotated by every grid element."""

    cost_kind = "conv"

    def __init__(self, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        matrices = cube_group()[0]
        index = torch.stack([rotation_index(kernel_size, m) for m in matrices])
        self.register_buffer("kernel_index", index, persistent=False)  # (24, k^3)

    def rotated(self, weight: Tensor) -> Tensor:
        """``weight (O, I, k, k, k)`` -> ``(O, 24, I, k, k, k)``, entry ``g`` the kernel rotated by ``g``."""
        o, i, k = weight.shape[0], weight.shape[1], self.kernel_size
        taps = weight.flatten(2)[:, :, self.kernel_index]  # (O, I, 24, k^3)
        return taps.permute(0, 2, 1, 3).reshape(o, GRID_SIZE, i, k, k, k)

    def _conv(self, in_channels: int, out_channels: int, groups: int, weight: Tensor) -> nn.Conv3d:
        conv = nn.Conv3d(in_channels, out_channels, self.kernel_size, stride=self.stride, padding=self.padding,
                         groups=groups, bias=False)
        with torch.no_grad():
            conv.weight.copy_(weight)
        return conv.eval()


class GridLift(_RotatedKernels):
    """Scalar channels ``(B, C_in, ...)`` -> grid features ``(B, C_out * 24, ...)``:
    ``f[c, g, x] = sum_y sum_i k_ci(g^-1 (y - x)) in_i(y)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__(kernel_size, stride, padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def expanded(self) -> Tensor:
        shape = (self.out_channels * GRID_SIZE, self.in_channels, *self.weight.shape[2:])
        return self.rotated(self.weight).reshape(shape)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv3d(x, self.expanded(), stride=self.stride, padding=self.padding)

    def flop_count(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
        return FlopCount(matmul=2 * math.prod(y_shape) * self.in_channels * self.kernel_size**3)

    def export(self) -> nn.Conv3d:
        return self._conv(self.in_channels, self.out_channels * GRID_SIZE, 1, self.expanded().detach())


class GridDepthwise(_RotatedKernels):
    """Spatial depthwise convolution on the grid: one kernel per channel, rotated by each orientation."""

    def __init__(self, channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0) -> None:
        super().__init__(kernel_size, stride, padding)
        self.channels = channels
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def expanded(self) -> Tensor:
        return self.rotated(self.weight).reshape(self.channels * GRID_SIZE, 1, *self.weight.shape[2:])

    def forward(self, x: Tensor) -> Tensor:
        return F.conv3d(x, self.expanded(), stride=self.stride, padding=self.padding,
                        groups=self.channels * GRID_SIZE)

    def flop_count(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
        return FlopCount(matmul=2 * math.prod(y_shape) * self.kernel_size**3)

    def export(self) -> nn.Conv3d:
        channels = self.channels * GRID_SIZE
        return self._conv(channels, channels, channels, self.expanded().detach())


class OrientationConv(GridModule):
    """Convolution over the orientations, per channel and voxel: ``sum_h a_c(g^-1 h) f[c, h, x]``
    (a ``24 x 24`` matrix per channel, built from 24 weights by the group's Cayley table)."""

    cost_kind = "orientation"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        _, cayley, inverse = cube_group()
        self.register_buffer("table", torch.from_numpy(cayley[inverse]), persistent=False)  # [g, h] -> g^-1 h
        weight = torch.zeros(channels, GRID_SIZE)
        weight[:, identity_element()] = 1.0  # starts near the identity map
        self.weight = nn.Parameter(weight + 0.1 * torch.randn(channels, GRID_SIZE) / math.sqrt(GRID_SIZE))

    def matrices(self) -> Tensor:
        return self.weight[:, self.table]  # (C, 24, 24)

    def forward(self, x: Tensor) -> Tensor:
        return orientation_matmul(self.matrices(), x)

    def flop_count(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
        return FlopCount(matmul=2 * math.prod(y_shape) * GRID_SIZE)

    def export(self) -> OrientationMatmul:
        return OrientationMatmul(self.matrices().detach())


def orientation_matmul(matrices: Tensor, x: Tensor) -> Tensor:
    """``matrices (C, 24, 24)`` applied to the orientations of every channel of ``x (B, C * 24, ...)``."""
    b, spatial = x.shape[0], x.shape[2:]
    y = torch.matmul(matrices, x.reshape(b, matrices.shape[0], GRID_SIZE, -1))
    return y.reshape(b, -1, *spatial)


class OrientationMatmul(nn.Module):
    """Exported :class:`OrientationConv`: fixed per-channel ``24 x 24`` matrices."""

    def __init__(self, matrices: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrices", matrices.clone())

    def forward(self, x: Tensor) -> Tensor:
        return orientation_matmul(self.matrices, x)


class GridMixing(GridModule):
    """Pointwise channel mixing shared by every orientation and voxel: a structlayers plugin on rows
    ``(B * 24 * voxels, C_in)``.  Any plugin is equivariant here (it never touches the orientation)."""

    cost_kind = "mixing"

    def __init__(self, in_channels: int, out_channels: int, spec: MixingSpec | None = None, *,
                 bias: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.spec = spec or MixingSpec()
        self.map = build_map(self.spec, in_channels, out_channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        b, spatial = x.shape[0], x.shape[2:]
        rows = x.reshape(b, self.in_channels, -1).transpose(1, 2)  # (B, 24 V, C_in)
        y = self.map(rows.reshape(-1, self.in_channels)).view(b, -1, self.out_channels)
        return y.transpose(1, 2).reshape(b, self.out_channels * GRID_SIZE, *spatial)

    def flop_count(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
        rows = x_shape[0] * math.prod(x_shape[1:]) // self.in_channels
        module = self.map
        if hasattr(module, "flop_count"):
            return module.flop_count(rows)
        return linear_flops(rows, module.in_features, module.out_features, module.bias is not None)


class GridBatchNorm(GridModule):
    """Batch norm per channel, statistics over the batch, the orientations and the voxels."""

    cost_kind = "norm"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.bn = nn.BatchNorm3d(channels)

    def forward(self, x: Tensor) -> Tensor:
        b, d, h, w = x.shape[0], *x.shape[2:]
        return self.bn(x.view(b, self.channels, GRID_SIZE * d, h, w)).view_as(x)

    def flop_count(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
        return FlopCount(elementwise=3 * math.prod(y_shape))


class GridActivation(GridModule):
    """A pointwise nonlinearity on every sample of the grid (exactly equivariant: rotations permute samples)."""

    cost_kind = "activation"

    def __init__(self, name: str) -> None:
        super().__init__()
        from atompaint.encoders.layers import activation_fn

        self.name = name
        self.function = activation_fn(name)

    def forward(self, x: Tensor) -> Tensor:
        return self.function(x)

    def flop_count(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
        return FlopCount(elementwise=math.prod(y_shape))

    def extra_repr(self) -> str:
        return self.name


class GridPool(GridModule):
    """Anti-aliased stride-2 average pooling (a fixed Gaussian, symmetric under the cube's rotations),
    padded so that odd grids stay centred (as :func:`atompaint.encoders.layers.aligned_blur_pool`)."""

    cost_kind = "pool"

    def __init__(self, size: int, sigma: float = 0.33) -> None:
        super().__init__()
        taps = gaussian_taps(sigma)
        self.padding = aligned_pool_padding(size, len(taps), 2)
        self.register_buffer("taps", taps.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return blur_pool3d(x, self.taps.to(x.dtype), [2] * 3, [self.padding] * 3)

    def flop_count(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
        return FlopCount(matmul=2 * math.prod(y_shape) * len(self.taps) ** 3)

    def export(self) -> BlurPoolExport:
        return BlurPoolExport(gaussian_cube(self.taps), (2,) * 3, (self.padding,) * 3)


class GridSeparableConv(nn.Sequential):
    """Depthwise spatial convolution, orientation convolution, channel mixing (see the module docs)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
                 mixing: MixingSpec | None = None) -> None:
        super().__init__(GridDepthwise(in_channels, kernel_size, stride=stride, padding=padding),
                         OrientationConv(in_channels), GridMixing(in_channels, out_channels, mixing))


class GridResBlock(nn.Module):
    """``act(bn2(conv2(act(bn1(conv1(x))))) + skip(x))`` with separable grid convolutions; ``skip``
    is the identity or, when the channels change, a :class:`GridMixing`."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, *, kernel_size: int,
                 activation: str, mixing: MixingSpec | None = None) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.conv1 = GridSeparableConv(in_channels, mid_channels, kernel_size, padding=pad, mixing=mixing)
        self.bn1, self.act1 = GridBatchNorm(mid_channels), GridActivation(activation)
        self.conv2 = GridSeparableConv(mid_channels, out_channels, kernel_size, padding=pad, mixing=mixing)
        self.bn2, self.act2 = GridBatchNorm(out_channels), GridActivation(activation)
        self.skip = GridMixing(in_channels, out_channels, mixing) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(y + (x if self.skip is None else self.skip(x)))


class GridInvariantReadout(GridModule):
    """Rotation-invariant features of pooled grid fields ``(B, C * 24)``: per channel the mean and the
    root mean square over the orientations (a cube rotation permutes them)."""

    cost_kind = "readout"

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.channels, self.eps = channels, eps
        self.in_features, self.out_features = channels * GRID_SIZE, 2 * channels

    def forward(self, x: Tensor) -> Tensor:
        grid = x.view(x.shape[0], self.channels, GRID_SIZE)
        return torch.cat([grid.mean(-1), torch.sqrt(grid.pow(2).mean(-1) + self.eps)], dim=1)

    def flop_count(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
        return FlopCount(elementwise=3 * math.prod(x_shape))


class GridEncoder(nn.Module):
    """A grid-domain encoder (``conv: grid``), with the interface of
    :class:`~atompaint.encoders.architectures.Encoder`: ``fields(x)`` is the spatial mean of the last
    grid features ``(B, channels * 24)`` (equivariant: a cube rotation permutes the orientations),
    ``forward(x)`` their invariant read-out; :meth:`export` is plain PyTorch."""

    def __init__(self, config, body: nn.Sequential, channels: int) -> None:
        super().__init__()
        self.config = config
        self.body = body
        self.channels = channels
        self.readout = GridInvariantReadout(channels)
        self.field_features = channels * GRID_SIZE
        self.out_features = self.readout.out_features

    def fields(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input (B, {self.config.in_channels}, L, L, L), got {tuple(x.shape)}")
        return self.body(x).flatten(2).mean(dim=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.fields(x))

    def export(self) -> GridEncoder:
        """A copy in eval mode whose units are plain PyTorch (:meth:`GridModule.export`)."""
        clone = copy.deepcopy(self).eval()
        _export_children(clone)
        return clone


def _export_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, GridModule):
            setattr(module, name, child.export())
        else:
            _export_children(child)
