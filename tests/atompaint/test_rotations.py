"""Random rotations are uniform on SO(3) (Haar measure), not only proper.

Under the Haar measure the rotation angle theta has density (1 - cos theta) / pi on [0, pi] (CDF
(theta - sin theta) / pi), the axis is uniform on the sphere, and every column of the matrix -- the
image of a coordinate axis -- is uniform on the sphere, so each matrix entry is uniform on [-1, 1].
The classic mistake of drawing a uniform axis and a uniform angle passes every "is a rotation" check
but puts far too many rotations near the identity; these tests would catch it.  Fixed seeds make the
Kolmogorov-Smirnov p-values deterministic.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from atompaint.voxelize import random_rotation
from atompaint.voxelize.rotations import axis_angle_to_matrix

N = 20_000


def _angles(rotations: np.ndarray) -> np.ndarray:
    traces = np.trace(rotations, axis1=1, axis2=2)
    return np.arccos(np.clip((traces - 1) / 2, -1.0, 1.0))


def _haar_angle_cdf(theta: np.ndarray) -> np.ndarray:
    return (theta - np.sin(theta)) / np.pi


def _uniform_axis_uniform_angle(rng: np.random.Generator) -> np.ndarray:
    """The axis-angle bug: a uniform axis with an angle uniform in [0, 2 pi)."""
    return axis_angle_to_matrix(rng.normal(size=3), rng.uniform(0, 2 * np.pi))


def test_rotation_angles_follow_the_haar_density() -> None:
    rng = np.random.default_rng(2024)
    rotations = np.stack([random_rotation(rng) for _ in range(N)])
    result = stats.kstest(_angles(rotations), _haar_angle_cdf)
    assert result.pvalue > 0.01, result
    # Each entry of a Haar rotation is uniform on [-1, 1] (its column is uniform on the sphere).
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        entry = stats.kstest(rotations[:, i, j], stats.uniform(loc=-1, scale=2).cdf)
        assert entry.pvalue > 0.01, ((i, j), entry)


def test_the_axis_angle_bug_is_caught() -> None:
    """The same statistic rejects a uniform angle outright (its rotations are proper all the same)."""
    rng = np.random.default_rng(2024)
    wrong = np.stack([_uniform_axis_uniform_angle(rng) for _ in range(N)])
    np.testing.assert_allclose(wrong @ np.swapaxes(wrong, 1, 2), np.broadcast_to(np.eye(3), wrong.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(wrong), 1.0)
    assert stats.kstest(_angles(wrong), _haar_angle_cdf).pvalue < 1e-12
    # Even at a hundredth of the sample size the deviation is plain.
    assert stats.kstest(_angles(wrong[: N // 100]), _haar_angle_cdf).pvalue < 1e-3
