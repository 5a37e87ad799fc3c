"""Atoms -> 3D images: each atom is a sphere, each voxel holds its exact overlap volume with the atoms.

Conventions (the same as ``macromol_voxelize``): the image is ``(C, L, L, L)`` with axes ``(channel, x,
y, z)``; voxel ``(i, j, k)`` is centred at ``center + ((i, j, k) - (L - 1) / 2) * resolution_A``, so for
odd ``L`` the centre of the image is the centre of the middle voxel.  A rotation ``R`` is applied about
the image centre: the image shows the atoms at ``R @ (x - center) + center``.

Speed comes from (1) a KD-tree built once per structure (:class:`PreparedAtoms`), which keeps only the
atoms that can touch the image before any per-atom work, and (2) the compiled kernel
:func:`atompaint.voxelize.kernel.rasterize_into` (numba), which visits each such atom once and only the
voxels its sphere can reach.  Without numba, :func:`window_overlaps` computes every (atom, voxel) overlap
of an image in a handful of vectorized numpy calls instead.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from ..structures import AtomTable
from . import kernel
from .overlap import window_overlaps

FillMode = Literal["overlap_A3", "fraction_atom", "fraction_voxel"]
#: One radius for every atom, or radii by element (``"*"``: the rest), given as a mapping or as the
#: sorted ``(element, radius)`` pairs :class:`ImageParams` stores.
Radius = float | Mapping[str, float] | tuple[tuple[str, float], ...]
Backend = Literal["auto", "numba", "numpy"]

DEFAULT_CHANNELS: tuple[tuple[str, ...], ...] = (("C",), ("N",), ("O",), ("S", "SE"), ("*",))


@dataclass(frozen=True)
class ImageParams:
    """Everything about an image except where it is taken.

    Attributes:
        length_voxels: voxels along each side (odd keeps a voxel at the exact centre).
        resolution_A: voxel side in Angstrom.
        channels: element groups, one per channel; ``"*"`` matches every element not named elsewhere.
            Atoms of elements in no channel are left out of the image.
        radius_A: sphere radius of every atom, or a mapping from element to radius (``"*"`` for the rest),
            stored as sorted ``(element, radius)`` pairs so the parameters stay hashable.  A mapping
            must cover every element that is imaged; elements in no channel need no radius.
        fill: ``"overlap_A3"`` (overlap volume in A^3, the default), ``"fraction_atom"`` (overlap / sphere
            volume: each fully imaged atom sums to 1) or ``"fraction_voxel"`` (overlap / voxel volume).
        dtype: floating dtype of the returned image, by name (computation is float64); numpy types
            are accepted and stored by name.

    Every field is plain data, so the parameters load from YAML with
    :func:`structlayers.configs.from_dict` (channels as lists of element lists).
    """

    length_voxels: int = 21
    resolution_A: float = 0.75
    channels: tuple[tuple[str, ...], ...] = DEFAULT_CHANNELS
    radius_A: Radius = 0.5
    fill: FillMode = "overlap_A3"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if int(self.length_voxels) != self.length_voxels or self.length_voxels < 1:
            raise ValueError(f"length_voxels must be a positive integer, not {self.length_voxels!r}")
        if not self.resolution_A > 0:
            raise ValueError(f"resolution_A must be positive, not {self.resolution_A!r}")
        channels = tuple(tuple(_channel_elements(c)) for c in self.channels)
        if not channels or any(not c for c in channels):
            raise ValueError(f"channels must be a non-empty list of non-empty element lists: {self.channels!r}")
        object.__setattr__(self, "channels", channels)
        radius = dict(self.radius_A) if isinstance(self.radius_A, (Mapping, tuple)) else None
        radii = list(radius.values()) if radius is not None else [self.radius_A]
        if not radii or not all(np.isfinite(float(v)) and float(v) > 0 for v in radii):
            raise ValueError(f"atom radii must be positive, not {self.radius_A!r}")
        if radius is not None:  # stored as sorted pairs so the params stay hashable
            object.__setattr__(self, "radius_A", tuple(sorted((k.upper(), float(v)) for k, v in radius.items())))
        if self.fill not in ("overlap_A3", "fraction_atom", "fraction_voxel"):
            raise ValueError(f"unknown fill {self.fill!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind != "f":
            raise ValueError(f"dtype must be a floating point type, not {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype.name)

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def length_A(self) -> float:
        return self.length_voxels * self.resolution_A

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n = self.length_voxels
        return (self.num_channels, n, n, n)

    def radius_of(self, elements: np.ndarray) -> np.ndarray:
        """Radius (A) of each element."""
        if not isinstance(self.radius_A, tuple):
            return np.full(len(elements), float(self.radius_A))
        table = dict(self.radius_A)
        default = table.pop("*", None)
        out = np.full(len(elements), np.nan if default is None else default)
        for element, radius in table.items():
            out[elements == element] = radius
        if np.isnan(out).any():
            missing = sorted(set(elements[np.isnan(out)].tolist()))
            raise ValueError(f"no radius for element(s) {missing}; add them or a '*' entry to radius_A")
        return out

    @property
    def max_radius_A(self) -> float:
        if isinstance(self.radius_A, tuple):
            return max(v for _, v in self.radius_A)
        return float(self.radius_A)


def _channel_elements(channel: Sequence[str] | str) -> list[str]:
    if isinstance(channel, str):
        raise ValueError(f"each channel must be a list of elements, found the string {channel!r}")
    return [str(e).upper() for e in channel]


def channel_of_atoms(elements: np.ndarray, channels: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """``(atom_index, channel)`` pairs: one row per (atom, channel it belongs to)."""
    named = {e for c in channels for e in c if e != "*"}
    rows, chans = [], []
    for ch, group in enumerate(channels):
        mask = np.isin(elements, [e for e in group if e != "*"])
        if "*" in group:
            mask |= ~np.isin(elements, list(named))
        idx = np.flatnonzero(mask)
        rows.append(idx)
        chans.append(np.full(len(idx), ch, dtype=np.int64))
    return np.concatenate(rows), np.concatenate(chans)


class PreparedAtoms:
    """The per-structure state for fast voxelization: imaged atoms, their channels and a KD-tree.

    Build once per structure and image parameters, then call :meth:`image` for any number of
    centres/rotations.  ``channel_mask`` is ``(N, C)`` bool: an atom may belong to several channels.
    ``backend`` is passed to :func:`rasterize`.
    """

    def __init__(self, atoms: AtomTable, params: ImageParams, backend: Backend = "auto"):
        from scipy.spatial import cKDTree

        self.params = params
        self.backend = backend
        atom_idx, channel = channel_of_atoms(atoms.element, params.channels)
        mask = np.zeros((len(atoms), params.num_channels), dtype=bool)
        mask[atom_idx, channel] = True
        self.atom_index = np.flatnonzero(mask.any(axis=1))
        self.channel_mask = mask[self.atom_index]
        self.coords = atoms.coords[self.atom_index].astype(np.float64)
        self.radius = params.radius_of(atoms.element[self.atom_index])  # atoms in no channel need none
        self.occupancy = atoms.occupancy[self.atom_index].astype(np.float64)
        self._scale = _fill_scale(params, self.occupancy, self.radius)
        self._tree = cKDTree(self.coords) if len(self.coords) else None
        # Any atom touching the image lies within this distance of the centre, whatever the rotation.
        self._reach = np.sqrt(3) * params.length_A / 2 + params.max_radius_A

    def __len__(self) -> int:
        return len(self.coords)

    def candidates(self, center: np.ndarray) -> np.ndarray:
        """Rows that can touch an image centred at ``center`` (any rotation)."""
        if self._tree is None:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._tree.query_ball_point(center, self._reach), dtype=np.int64)

    def image(self, center: Sequence[float], rotation: np.ndarray | None = None) -> np.ndarray:
        """The ``(C, L, L, L)`` image centred at ``center``, optionally rotated about it."""
        rotations = None if rotation is None else np.asarray(rotation)[None]
        return self.images(np.asarray(center, dtype=np.float64)[None], rotations)[0]

    def images(self, centers: np.ndarray, rotations: np.ndarray | None = None) -> np.ndarray:
        """A batch ``(B, C, L, L, L)`` of images, one per centre ``(B, 3)`` and rotation ``(B, 3, 3)``.

        One vectorized pass for the whole batch: per-call overhead is paid once, not per image.
        """
        centers = _check_centers(centers)
        if rotations is not None:
            rotations = _check_rotations(rotations, len(centers))
        if self._tree is None:
            return np.zeros((len(centers), *self.params.shape), dtype=self.params.dtype)
        hits = self._tree.query_ball_point(centers, self._reach)
        counts = np.fromiter(map(len, hits), dtype=np.int64, count=len(hits))
        rows = np.fromiter(itertools.chain.from_iterable(hits), dtype=np.int64, count=int(counts.sum()))
        image_index = np.repeat(np.arange(len(centers)), counts)
        return _render(
            self.coords, rows, image_index, centers, rotations, self.radius, self._scale, self.channel_mask,
            self.params, self.backend,
        ).astype(self.params.dtype)


def _check_centers(centers: np.ndarray) -> np.ndarray:
    arr = np.asarray(centers, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.isfinite(arr).all():
        raise ValueError(f"center must be 3 finite coordinates (a batch: shape (B, 3)), not {centers!r}")
    return arr


def _check_rotations(rotations: np.ndarray, n: int) -> np.ndarray:
    r = np.asarray(rotations, dtype=np.float64)
    if r.shape != (n, 3, 3):
        raise ValueError(f"rotation must be a 3x3 matrix (a batch: shape ({n}, 3, 3)), got shape {r.shape}")
    if np.abs(r @ np.swapaxes(r, 1, 2) - np.eye(3)).max() > 1e-5 or np.abs(np.linalg.det(r) - 1.0).max() > 1e-5:
        raise ValueError("rotation must be a proper rotation matrix (orthonormal, determinant +1)")
    return r


def window_size(params: ImageParams) -> int:
    """Voxels per axis that one atom's sphere can span."""
    return int(np.ceil(2 * params.max_radius_A / params.resolution_A - 1e-9)) + 1


def render_bytes(params: ImageParams, images: int = 1, atoms: int = 1) -> int:
    """Bytes that rendering ``images`` images of ``params`` allocates: the float64 images, and the
    buffers of one atom's window of :func:`window_size` voxels per axis (once in the compiled kernel,
    per atom -- ``atoms`` -- in the numpy path).  A fine resolution makes the window, not the image,
    the large part: radius 0.5 A at 0.001 A is a 1001^3 window."""
    m = window_size(params) + 2
    return 8 * (images * params.num_channels * params.length_voxels**3 + 4 * m**3 * max(atoms, 1))


def check_render_memory(params: ImageParams, images: int = 1, atoms: int = 1) -> None:
    """Refuse, with the estimate, to render what would not fit in the memory available
    (:func:`structlayers.utils.memory.check_allocation`; see :func:`render_bytes`)."""
    nbytes = render_bytes(params, images, atoms)
    if nbytes > 1 << 28:  # small requests always fit: skip reading the available memory (and importing torch)
        from structlayers.utils.memory import check_allocation

        check_allocation(nbytes, f"{images} image(s) of {params.num_channels} x {params.length_voxels}^3 voxels "
                                 f"at {params.resolution_A:g} A, whose atoms span {window_size(params)}^3 voxels")


def rasterize(
    rel_coords: np.ndarray,
    radius: np.ndarray,
    occupancy: np.ndarray,
    channel: np.ndarray,
    params: ImageParams,
    image_index: np.ndarray | None = None,
    n_images: int | None = None,
    backend: Backend = "auto",
) -> np.ndarray:
    """Images of atoms given relative to their image's centre (already rotated); the numeric kernel.

    ``channel`` is each atom's channel ``(N,)`` or its channel membership ``(N, C)`` (bool).  Without
    ``image_index`` all atoms belong to one image and the result is ``(C, L, L, L)``; with it, atom ``i``
    belongs to image ``image_index[i]`` and the result is ``(n_images, C, L, L, L)``.  ``backend``:
    ``"numba"`` (the compiled kernel), ``"numpy"`` (vectorized, no compiler needed) or ``"auto"`` (numba
    when it is installed); both give the same images up to float64 rounding.
    """
    batched = image_index is not None
    if image_index is None:
        image_index, n_images = np.zeros(len(rel_coords), dtype=np.int64), 1
    elif n_images is None:
        n_images = int(image_index.max()) + 1 if len(image_index) else 0
    channel = np.asarray(channel)
    if channel.ndim == 1:
        channel_mask = np.zeros((len(channel), params.num_channels), dtype=bool)
        channel_mask[np.arange(len(channel)), channel] = True
    else:
        channel_mask = channel.astype(bool, copy=False)
    radius = np.asarray(radius, dtype=np.float64)
    image = _render(
        np.asarray(rel_coords, dtype=np.float64),
        np.arange(len(rel_coords)),
        np.asarray(image_index, dtype=np.int64),
        np.zeros((n_images, 3)),
        None,
        radius,
        _fill_scale(params, np.asarray(occupancy, dtype=np.float64), radius),
        channel_mask,
        params,
        backend,
    ).astype(params.dtype)
    return image if batched else image[0]


def _fill_scale(params: ImageParams, occupancy: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Per-atom factor of the overlap volume: occupancy and the normalization of ``params.fill``."""
    if params.fill == "fraction_atom":
        return occupancy / (4.0 / 3.0 * np.pi * radius**3)
    if params.fill == "fraction_voxel":
        return occupancy / params.resolution_A**3
    return occupancy


def _render(
    coords: np.ndarray,
    rows: np.ndarray,
    image_index: np.ndarray,
    centers: np.ndarray,
    rotations: np.ndarray | None,
    radius: np.ndarray,
    scale: np.ndarray,
    channel_mask: np.ndarray,
    params: ImageParams,
    backend: Backend,
) -> np.ndarray:
    """float64 ``(B, C, L, L, L)`` images of atoms ``rows`` (per-atom arrays are indexed by row), atom
    ``i`` seen from ``centers[image_index[i]]`` rotated by ``rotations[image_index[i]]``."""
    if backend == "auto":
        backend = "numba" if kernel.AVAILABLE else "numpy"
    if backend not in ("numba", "numpy"):
        raise ValueError(f"unknown backend {backend!r}")
    if backend == "numba" and not kernel.AVAILABLE:
        raise ValueError("backend='numba' needs the numba package")
    shape = (len(centers), *params.shape)
    check_render_memory(params, len(centers), len(rows) if backend == "numpy" else 1)
    if backend == "numpy":
        rel = coords[rows] - centers[image_index]
        if rotations is not None:
            rel = np.einsum("nij,nj->ni", rotations[image_index], rel)
        return _rasterize_numpy(rel, radius[rows], scale[rows], channel_mask[rows], image_index, params, shape)
    if rotations is None:
        rotations = np.broadcast_to(np.eye(3), (len(centers), 3, 3))
    image = np.zeros(shape)
    kernel.rasterize_into(
        image,
        np.ascontiguousarray(coords),
        np.ascontiguousarray(rows, dtype=np.int64),
        np.ascontiguousarray(image_index, dtype=np.int64),
        np.ascontiguousarray(centers),
        np.ascontiguousarray(rotations, dtype=np.float64),
        np.ascontiguousarray(radius),
        np.ascontiguousarray(scale),
        np.ascontiguousarray(channel_mask),
        params.length_voxels,
        float(params.resolution_A),
        window_size(params),
    )
    return image


def _rasterize_numpy(
    rel_coords: np.ndarray,
    radius: np.ndarray,
    scale: np.ndarray,
    channel_mask: np.ndarray,
    image_index: np.ndarray,
    params: ImageParams,
    shape: tuple[int, ...],
) -> np.ndarray:
    """:func:`rasterize` with :func:`window_overlaps` and one ``bincount`` scatter (float64 images)."""
    n_vox = params.length_voxels
    res = params.resolution_A
    half = params.length_A / 2
    # Drop atoms whose bounding box misses the image (the KD-tree ball is a superset).
    keep = np.all(np.abs(rel_coords) < half + radius[:, None], axis=1) & channel_mask.any(axis=1)
    rel_coords, radius, scale = rel_coords[keep], radius[keep], scale[keep]
    channel_mask, image_index = channel_mask[keep], image_index[keep]
    if len(rel_coords) == 0:
        return np.zeros(shape)

    m = window_size(params)
    # First voxel of each atom's window, per axis, and the edges of the window's voxels.
    start = np.floor((rel_coords - radius[:, None] + half) / res).astype(np.int64)
    steps = np.arange(m + 1)
    edges = (start[:, :, None] + steps) * res - half  # (N, 3, m + 1), relative to the image centre
    idx = start[:, :, None] + steps[:m]  # (N, 3, m) voxel indices
    inside = (idx >= 0) & (idx < n_vox)
    values = window_overlaps(edges - rel_coords[:, :, None], radius, inside.astype(np.float64))
    values *= scale[:, None, None, None]

    # Flat image index of every window voxel (clipped; voxels outside the image carry zero weight),
    # once per (atom, channel) pair.
    atom, channel = np.nonzero(channel_mask)
    idx = np.clip(idx[atom], 0, n_vox - 1)
    flat = (
        ((image_index[atom] * params.num_channels + channel) * n_vox**3)[:, None, None, None]
        + idx[:, 0, :, None, None] * n_vox**2
        + idx[:, 1, None, :, None] * n_vox
        + idx[:, 2, None, None, :]
    )  # (pairs, m, m, m)
    image = np.bincount(flat.ravel(), weights=values[atom].ravel(), minlength=int(np.prod(shape)))
    return image.reshape(shape)


_PREPARED: weakref.WeakKeyDictionary[AtomTable, dict[ImageParams, PreparedAtoms]] = weakref.WeakKeyDictionary()


def prepare(atoms: AtomTable, params: ImageParams) -> PreparedAtoms:
    """The cached :class:`PreparedAtoms` for this table and parameters (built on first use)."""
    per_table = _PREPARED.setdefault(atoms, {})
    if params not in per_table:
        per_table[params] = PreparedAtoms(atoms, params)
    return per_table[params]


def _check_prepared_params(built: ImageParams, params: ImageParams | None, image: Mapping[str, Any]) -> None:
    """Refuse image parameters that contradict those a :class:`PreparedAtoms` was built with: its
    image size is fixed, so a differing ``params`` or keyword must be an error, not ignored.  Keywords
    that repeat the built values are accepted."""
    if params is not None and params != built:
        raise ValueError(f"params {params} differ from those the PreparedAtoms were built with, {built}")
    if not image:
        return
    requested = replace(built, **image)  # also validates and normalises the keywords (radii, channels)
    conflicts = [k for k in image if getattr(requested, k) != getattr(built, k)]
    if conflicts:
        detail = ", ".join(f"{k}={image[k]!r} (built with {getattr(built, k)!r})" for k in sorted(conflicts))
        raise ValueError(f"the PreparedAtoms were built with other image parameters: {detail}; "
                         "prepare the atoms again with these parameters, or pass an AtomTable")


def voxelize(
    atoms: AtomTable | PreparedAtoms,
    center: Sequence[float],
    params: ImageParams | None = None,
    *,
    rotation: np.ndarray | None = None,
    **image: Any,
) -> np.ndarray:
    """Voxelize ``atoms`` into a float ``(C, L, L, L)`` image centred at ``center``.

    Each atom is a sphere (``radius_A``); each voxel of a channel holds the occupancy-weighted volume of
    overlap between the cube and the spheres of that channel's atoms.  The image is described by
    ``params`` or, field by field, by keyword arguments ``image`` (``length_voxels=9``, ``channels=...``;
    see :class:`ImageParams`, whose defaults apply).  ``rotation`` (3x3) rotates the atoms about
    ``center`` before imaging.  The KD-tree of a table is cached, so repeated calls on the same
    :class:`AtomTable` only pay for the atoms near each image.
    """
    if params is not None and image:
        raise ValueError(f"give params or image fields ({', '.join(sorted(image))}), not both")
    if isinstance(atoms, PreparedAtoms):
        _check_prepared_params(atoms.params, params, image)
        return atoms.image(center, rotation)
    return prepare(atoms, params or ImageParams(**image)).image(center, rotation)


__all__ = [
    "DEFAULT_CHANNELS",
    "ImageParams",
    "PreparedAtoms",
    "channel_of_atoms",
    "prepare",
    "rasterize",
    "voxelize",
    "window_size",
]
