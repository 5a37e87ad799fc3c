"""Field types, channel schedules and SO(3) sampling grids shared by every encoder.

Every hidden feature field is a *spectral regular* representation of SO(3): the direct sum of the
irreps up to a band limit ``L``, each with multiplicity equal to its dimension (band limit 2:
``rho_0 + 3 rho_1 + 5 rho_2``, 35 numbers per field).  These are the fields a Fourier
nonlinearity can act on, and what the seed experiments used.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
from escnn import group, gspaces
from escnn import nn as enn

Schedule = Literal["linear", "log", "inverse-size", "double"]
SCHEDULES: tuple[str, ...] = ("linear", "log", "inverse-size", "double")


def _shared_on_copy(self: object, memo: dict) -> object:
    return self


# escnn's groups, gspaces, representations and field types are immutable descriptions that escnn
# compares by identity (a copied SO(3) is a different group, and a copied field type no longer matches
# its modules'); copying a module must share them, as copying a tensor shares its dtype.  Without this,
# ``copy.deepcopy`` of any escnn module fails (and with it ``structlayers.collapse``).
for _cls in (group.Group, group.Representation, gspaces.GSpace, enn.FieldType):
    _cls.__deepcopy__ = _shared_on_copy


@lru_cache(maxsize=1)
def so3_gspace() -> gspaces.GSpace3D:
    """The (cached) gspace of 3D rotations acting on R^3."""
    return gspaces.rot3dOnR3()


def spectral_irreps(band_limit: int) -> list[tuple]:
    """Irrep ids of SO(3) up to ``band_limit``, the Fourier basis of a spectral regular field."""
    if band_limit < 0:
        raise ValueError(f"band limit must be >= 0, got {band_limit}")
    return list(so3_gspace().fibergroup.bl_irreps(band_limit))


def spectral_field_type(channels: int, band_limit: int) -> enn.FieldType:
    """``channels`` copies of the spectral regular representation with the given band limit."""
    if channels < 1:
        raise ValueError(f"a field type needs at least one channel, got {channels}")
    gs = so3_gspace()
    rho = gs.fibergroup.spectral_regular_representation(*spectral_irreps(band_limit))
    return enn.FieldType(gs, channels * [rho])


def trivial_field_type(channels: int) -> enn.FieldType:
    """``channels`` scalar fields: the type of a voxelized input (one channel per atom type)."""
    gs = so3_gspace()
    return enn.FieldType(gs, channels * [gs.trivial_repr])


def default_grid_size(band_limit: int) -> int:
    """Thomson-cube ``N`` (24 N rotations) used to sample a band-limited field.

    Band limit 2 gives 96 samples, the number the seed experiments used; the grid grows linearly
    with the band limit so that the sampling stays well over-determined.
    """
    return max(1, 2 * band_limit)


def so3_grid(grid_size: int) -> list[group.GroupElement]:
    """The ``thomson_cube`` grid: 24 * ``grid_size`` rotations, closed under the cube's rotations.

    Closure under the octahedral group makes Fourier nonlinearities exactly equivariant to the
    90-degree rotations of the voxel grid.  escnn caches the Thomson solution on disk.
    """
    return so3_gspace().fibergroup.grid(type="thomson_cube", N=grid_size)


def channel_schedule(first: int, last: int, n: int, schedule: Schedule = "log") -> list[int]:
    """``n`` channel counts from ``first`` to ``last``, spaced linearly or geometrically.

    ``log`` (geometric) spacing multiplies the width by a constant factor per layer, like the
    "double the channels when the image shrinks" rule of VGG/ResNet; ``linear`` adds a constant.
    """
    if n < 1:
        raise ValueError(f"a channel schedule needs at least one entry, got {n}")
    if first < 1 or last < 1:
        raise ValueError(f"channel counts must be positive, got {first} and {last}")
    if n == 1:
        return [last]
    if schedule == "linear":
        values = np.linspace(first, last, n)
    elif schedule == "log":
        values = np.geomspace(first, last, n)
    else:
        raise ValueError(f"unknown channel schedule {schedule!r}; use 'linear' or 'log'")
    return [max(1, int(round(v))) for v in values]


def plan_channels(width: int, max_channels: int, sizes: list[int], strides: list[int],
                  schedule: Schedule = "log") -> list[int]:
    """Spectral regular fields of each stage of a plan: ``sizes[i]`` is the side length of stage
    ``i``'s output, ``strides[i - 1]`` the down-sampling between stages ``i - 1`` and ``i``.

    - ``linear`` / ``log``: :func:`channel_schedule` from ``width`` to ``max_channels``;
    - ``inverse-size``: ``width * sizes[0] / sizes[i]``, i.e. proportional to the inverse side
      length (architecture #1 of the seed notes: "scale the number of representations in proportion
      to the (inverse) relative change in side length"; the narrow #3);
    - ``double``: ``width`` doubled at every stride-2 step ("double on down-sampling", VGG's rule;
      architectures #2 and the wide #3).

    ``inverse-size`` and ``double`` are capped at ``max_channels``.
    """
    if len(strides) != len(sizes) - 1:
        raise ValueError(f"need one stride per stage transition: {len(sizes)} stages, {len(strides)} strides")
    if width < 1 or max_channels < 1:
        raise ValueError(f"channel counts must be positive, got {width} and {max_channels}")
    if schedule in ("linear", "log"):
        return channel_schedule(width, max_channels, len(sizes), schedule)
    if schedule == "inverse-size":
        return [min(max_channels, max(1, round(width * sizes[0] / s))) for s in sizes]
    if schedule == "double":
        channels = [width]
        for stride in strides:
            channels.append(channels[-1] * 2 if stride > 1 else channels[-1])
        return [min(max_channels, c) for c in channels]
    raise ValueError(f"unknown channel schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def fields_per_irrep(field_type: enn.FieldType) -> list[int]:
    """The dimension of every irrep copy in ``field_type``, in tensor order.

    Only valid for field types whose change of basis is the identity (true for trivial and
    spectral regular fields), so each irrep occupies a contiguous slice of the tensor.
    """
    dims: list[int] = []
    for rho in field_type.representations:
        if not np.allclose(rho.change_of_basis, np.eye(rho.size)):
            raise ValueError(f"representation {rho.name} is not a plain direct sum of irreps")
        group_ = rho.group
        dims.extend(group_.irrep(*irrep_id).size for irrep_id in rho.irreps)
    return dims


def aligned_pool_padding(size: int, kernel_size: int, stride: int = 2) -> int:
    """Padding for a strided window that keeps an odd grid odd and centred.

    With an odd input, an odd kernel and ``(size + 2p - k)`` divisible by the stride, the sampled
    centres are symmetric about the grid centre, so down-sampling commutes with 90-degree
    rotations and reflections.  Among the paddings that qualify, the one closest to "same"
    padding whose output is odd is returned.
    """
    if size % 2 == 0 or kernel_size % 2 == 0:
        raise ValueError(f"aligned down-sampling needs odd sizes, got input {size}, kernel {kernel_size}")
    half = (kernel_size - 1) // 2
    for padding in sorted(range(kernel_size), key=lambda p: abs(p - half)):
        span = size + 2 * padding - kernel_size
        if span < 0 or span % stride:
            continue
        out = span // stride + 1
        if out % 2 == 1 and out < size:
            return padding
    raise ValueError(f"cannot down-sample a grid of size {size} by {stride} and keep it odd and centred")


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Spatial size after a convolution or pooling window."""
    return math.floor((size + 2 * padding - kernel_size) / stride) + 1
