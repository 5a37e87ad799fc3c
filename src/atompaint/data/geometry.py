"""Geometry of the neighbour-location task: neighbour directions, random rotations, view placement.

Frames: a view's image shows the structure rotated about the view centre (see
:mod:`atompaint.voxelize`).  Both views of an example share one random rotation ``R`` (plus a small
extra rotation on view B), and view B is placed at ``center_a + distance * R^T d[label]`` in the
structure's frame -- so *in the image frame* B lies in direction ``d[label]`` from A, whatever ``R`` is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    return quaternion_to_matrix(q / np.linalg.norm(q))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def axis_angle_to_matrix(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues' formula."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)


def random_small_rotation(rng: np.random.Generator, max_angle_deg: float) -> np.ndarray:
    """Rotation about a uniform random axis by an angle uniform in ``[0, max_angle_deg]``."""
    if max_angle_deg <= 0:
        return np.eye(3)
    return axis_angle_to_matrix(rng.normal(size=3), np.deg2rad(rng.uniform(0, max_angle_deg)))


def random_offset_in_ball(rng: np.random.Generator, max_norm: float) -> np.ndarray:
    """A vector uniform in the ball of radius ``max_norm``."""
    if max_norm <= 0:
        return np.zeros(3)
    v = rng.normal(size=3)
    return v / np.linalg.norm(v) * max_norm * rng.random() ** (1 / 3)


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
) -> ViewPair:
    """The geometry of one example: view A at ``origin``, view B at one of the neighbour directions.

    The label is uniform over ``directions``; B's centre gets a translation uniform in a ball of radius
    ``max_translation_A`` and B's image an extra rotation of up to ``max_rotation_deg`` -- nuisance
    variation the model must see through.  With ``random_orientation`` both views share a uniform random
    rotation; without it (and without noise) ``center_b - center_a == distance_A * directions[label]``.
    """
    label = int(rng.integers(len(directions)))
    rot = random_rotation(rng) if random_orientation else np.eye(3)
    noise_rot = random_small_rotation(rng, max_rotation_deg)
    noise_shift = random_offset_in_ball(rng, max_translation_A)
    origin = np.asarray(origin, dtype=np.float64)
    center_b = origin + distance_A * (rot.T @ directions[label]) + noise_shift
    return ViewPair(origin, center_b, rot, noise_rot @ rot, label)
