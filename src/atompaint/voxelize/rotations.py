"""Rotation matrices: uniform random rotations of SO(3), small random rotations, random offsets.

The images of :mod:`atompaint.voxelize` take a rotation ``R`` about their centre (the image shows
``R @ (x - center) + center``); these helpers draw such rotations from a numpy generator.
"""

from __future__ import annotations

import numpy as np


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    return quaternion_to_matrix(q / np.linalg.norm(q))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """The rotation matrix of the unit quaternion ``(w, x, y, z)``."""
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
