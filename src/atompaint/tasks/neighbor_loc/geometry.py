"""Geometry of the neighbour-location task: neighbour directions and view placement.

Frames: a view's image shows the structure rotated about the view centre (see
:mod:`atompaint.voxelize`).  Both views of an example share one random rotation ``R`` (plus a small
extra rotation on view B), and view B is placed at ``center_a + distance * R^T d[label]`` in the
structure's frame -- so *in the image frame* B lies in direction ``d[label]`` from A, whatever ``R`` is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atompaint.voxelize.rotations import random_offset_in_ball, random_rotation, random_small_rotation

DIRECTION_SETS = ("faces", "icosahedron", "dodecahedron")


def neighbor_directions(name: str) -> np.ndarray:
    """Unit vectors ``(K, 3)``: ``"faces"`` (6 cube faces), ``"icosahedron"`` (12 vertices) or
    ``"dodecahedron"`` (20 vertices)."""
    if name == "faces":
        eye = np.eye(3)
        dirs = np.concatenate([eye, -eye])[[0, 3, 1, 4, 2, 5]]  # +x, -x, +y, -y, +z, -z
    elif name == "icosahedron":
        phi = (1 + np.sqrt(5)) / 2
        dirs = np.array(
            [(0, s1, s2 * phi) for s1 in (1, -1) for s2 in (1, -1)]
            + [(s1, s2 * phi, 0) for s1 in (1, -1) for s2 in (1, -1)]
            + [(s2 * phi, 0, s1) for s1 in (1, -1) for s2 in (1, -1)],
            dtype=np.float64,
        )
    elif name == "dodecahedron":
        phi = (1 + np.sqrt(5)) / 2
        cube = [(x, y, z) for x in (1, -1) for y in (1, -1) for z in (1, -1)]
        rest = (
            [(0, s1 / phi, s2 * phi) for s1 in (1, -1) for s2 in (1, -1)]
            + [(s1 / phi, s2 * phi, 0) for s1 in (1, -1) for s2 in (1, -1)]
            + [(s2 * phi, 0, s1 / phi) for s1 in (1, -1) for s2 in (1, -1)]
        )
        dirs = np.array(cube + rest, dtype=np.float64)
    else:
        raise ValueError(f"unknown neighbor direction set {name!r}; choose from {DIRECTION_SETS}")
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


@dataclass(frozen=True)
class ViewPair:
    """Where the two views of one example are taken (structure frame) and how they are rotated."""

    center_a: np.ndarray
    center_b: np.ndarray
    rotation_a: np.ndarray
    rotation_b: np.ndarray
    label: int


def make_view_pair(
    rng: np.random.Generator,
    origin: np.ndarray,
    directions: np.ndarray,
    distance_A: float,
    max_translation_A: float = 0.0,
    max_rotation_deg: float = 0.0,
    random_orientation: bool = True,
    *,
    label: int | None = None,
    rotation: np.ndarray | None = None,
) -> ViewPair:
    """The geometry of one example: view A at ``origin``, view B at one of the neighbour directions.

    The label is uniform over ``directions``; B's centre gets a translation uniform in a ball of radius
    ``max_translation_A`` and B's image an extra rotation of up to ``max_rotation_deg`` -- nuisance
    variation the model must see through.  With ``random_orientation`` both views share a uniform random
    rotation; without it (and without noise) ``center_b - center_a == distance_A * directions[label]``.
    ``label`` and ``rotation`` given (a construction that chose them) are used instead of drawing them.
    """
    label = int(rng.integers(len(directions))) if label is None else int(label)
    if rotation is not None:
        rot = np.asarray(rotation, dtype=np.float64)
    else:
        rot = random_rotation(rng) if random_orientation else np.eye(3)
    noise_rot = random_small_rotation(rng, max_rotation_deg)
    noise_shift = random_offset_in_ball(rng, max_translation_A)
    origin = np.asarray(origin, dtype=np.float64)
    center_b = origin + distance_A * (rot.T @ directions[label]) + noise_shift
    return ViewPair(origin, center_b, rot, noise_rot @ rot, label)


def neighbor_centers(origin: np.ndarray, rotation: np.ndarray, directions: np.ndarray, distance_A: float) -> np.ndarray:
    """Noise-free centres ``(K, 3)`` (structure frame) of the views at each neighbour direction of a view
    centred at ``origin`` and rotated by ``rotation``: ``origin + distance_A * rotation^T d_k``."""
    return np.asarray(origin, dtype=np.float64) + distance_A * np.asarray(directions) @ np.asarray(rotation)


def views_overlap(views: ViewPair, length_A: float, tol: float = 1e-9) -> bool:
    """Whether the image cubes of the two views (side ``length_A``) share volume.

    A view's cube is ``{x : |R (x - c)|_inf <= length_A / 2}`` (its image axes are the rows of its
    rotation ``R``).  Two boxes are disjoint exactly when one of 15 axes separates their projections
    -- the 3 + 3 face normals and the 9 cross products of edge directions (the separating axis
    theorem) -- so this is exact, not sampled.  Cubes that only touch do not overlap.
    """
    axes_a, axes_b = np.asarray(views.rotation_a), np.asarray(views.rotation_b)
    offset = np.asarray(views.center_b, dtype=np.float64) - np.asarray(views.center_a, dtype=np.float64)
    crosses = np.cross(axes_a[:, None, :], axes_b[None, :, :]).reshape(9, 3)
    norms = np.linalg.norm(crosses, axis=1)
    candidates = np.concatenate([axes_a, axes_b, crosses[norms > 1e-9] / norms[norms > 1e-9, None]])
    half = length_A / 2
    reach_a = half * np.abs(candidates @ axes_a.T).sum(axis=1)
    reach_b = half * np.abs(candidates @ axes_b.T).sum(axis=1)
    separated = np.abs(candidates @ offset) >= reach_a + reach_b - tol
    return not bool(separated.any())
