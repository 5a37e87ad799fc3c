"""Voxelization: atoms -> ``(C, L, L, L)`` float images of exact sphere/voxel overlap volumes."""

from . import kernel
from .core import (
    DEFAULT_CHANNELS,
    ImageParams,
    PreparedAtoms,
    channel_of_atoms,
    prepare,
    rasterize,
    voxelize,
    window_size,
)
from .overlap import octant_volume, sphere_box_overlap
from .rotations import random_rotation, random_small_rotation

__all__ = [
    "DEFAULT_CHANNELS",
    "ImageParams",
    "PreparedAtoms",
    "channel_of_atoms",
    "kernel",
    "octant_volume",
    "prepare",
    "random_rotation",
    "random_small_rotation",
    "rasterize",
    "sphere_box_overlap",
    "voxelize",
    "window_size",
]
