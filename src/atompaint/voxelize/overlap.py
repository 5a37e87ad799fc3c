"""Exact volume of overlap between spheres and axis-aligned boxes, vectorized over atoms.

The building block is the *octant volume*

    W(a, b, c) = vol{ |p| < r,  x > a, y > b, z > c }      for a, b, c >= 0,

which has a closed form (integrate the quarter-disc area of each z-slice over z; the resulting
integrals are elementary: arcsin, arctan and square roots).  Any half-space corner
``vol{x > p_x, y > p_y, z > p_z}`` with signed ``p`` follows from W by reflection and inclusion-exclusion
(``1{x > p} = [p < 0] + sign(p) 1{x > |p|}``), and the overlap with a box is the 8-corner
inclusion-exclusion of those.  For a whole image the corner terms of neighbouring voxels are shared: each
atom needs W on a small tensor grid of vertex offsets only, and per-axis linear maps (reflection +
finite difference) turn that grid into the overlap with every voxel of the atom's window.  Everything is
float64 numpy over (atom, vertex) arrays: no Python loop over atoms or voxels.
"""

from __future__ import annotations

import numpy as np


def _sqrt(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(x, 0.0))


def _g(z: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Antiderivative in z of ``r^2 - z^2``."""
    return z * (r * r - z * z / 3)


def _t(x: np.ndarray, z: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Antiderivative in z of ``rho^2 arcsin(x / rho) + x sqrt(rho^2 - x^2)`` with ``rho^2 = r^2 - z^2``.

    This is the part of the quarter-disc area ``|{u > x, v > y, u^2 + v^2 < rho^2}|`` that depends on the
    offset ``x`` alone (twice it, integrated over z).  With ``s = sqrt(r^2 - x^2 - z^2)`` every inverse
    trigonometric term is an ``arctan2``, which stays well defined at the sphere's surface.
    """
    s = _sqrt(r * r - x * x - z * z)
    return (
        _g(z, r) * np.arctan2(x, s)
        + x * (r * r - x * x / 3) * np.arctan2(z, s)
        + (2.0 / 3.0) * x * z * s
        - (2.0 / 3.0) * (r * r * r) * np.arctan2(x * z, r * s)
    )


def _octant_inside(a: np.ndarray, b: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
    """:func:`octant_volume` for 1-D arrays with ``a^2 + b^2 + c^2 < r^2``.

    ``W = pi/4 [g]_c^top - 1/2 ([T(a, .)]_c^top + [T(b, .)]_c^top) + a b (top - c)`` with
    ``top = sqrt(r^2 - a^2 - b^2)``.  W is symmetric in (a, b, c), so each triple is sorted: with two
    zero offsets W is a quarter spherical cap (a polynomial), and a zero offset's T terms vanish, so
    ``T`` -- the costly part -- is evaluated only for the non-zero offsets, in one stacked call.
    """
    abc = np.sort(np.stack([a, b, c], axis=1), axis=1)
    a, b, c = abc[:, 1], abc[:, 2], abc[:, 0]  # c: the smallest offset, a <= b the others
    top = _sqrt(r * r - a * a - b * b)
    out = 0.25 * np.pi * (_g(top, r) - _g(c, r)) + a * b * (top - c)
    # Pairs (point, offset) with a non-zero offset need T at top and at c.
    pts = np.concatenate([np.flatnonzero(a > 0), np.flatnonzero(b > 0)])
    if len(pts):
        x = np.concatenate([a[a > 0], b[b > 0]])
        rr = r[pts]
        t = _t(np.concatenate([x, x]), np.concatenate([top[pts], c[pts]]), np.concatenate([rr, rr]))
        k = len(pts)
        out -= 0.5 * np.bincount(pts, weights=t[:k] - t[k:], minlength=len(out))
    return np.maximum(out, 0.0)


def octant_volume(a: np.ndarray, b: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``vol{|p| < r, x > a, y > b, z > c}`` for ``a, b, c >= 0`` (broadcasting, float64)."""
    a, b, c, r = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c, r)))
    out = np.zeros(a.shape)
    inside = a * a + b * b + c * c < r * r
    if inside.any():
        out[inside] = _octant_inside(a[inside], b[inside], c[inside], r[inside])
    return out


def corner_volume(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``vol{|q| < r, q_x > p_x, q_y > p_y, q_z > p_z}`` for signed offsets ``p`` of shape ``(..., 3)``."""
    p = np.asarray(p, dtype=np.float64)
    total = np.zeros(p.shape[:-1])
    absp = np.abs(p)
    neg = p < 0
    coef0 = 2.0 * neg  # the whole line along an axis, as twice the half-line
    coef1 = np.where(neg, -1.0, 1.0)
    for ex in (0, 1):
        for ey in (0, 1):
            for ez in (0, 1):
                coef = (
                    (coef1[..., 0] if ex else coef0[..., 0])
                    * (coef1[..., 1] if ey else coef0[..., 1])
                    * (coef1[..., 2] if ez else coef0[..., 2])
                )
                total += coef * octant_volume(absp[..., 0] * ex, absp[..., 1] * ey, absp[..., 2] * ez, r)
    return total


def sphere_box_overlap(
    center: np.ndarray, radius: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """Volume of ``ball(center, radius) ∩ [lower, upper]`` (boxes axis-aligned; arrays broadcast over ``...``)."""
    center = np.asarray(center, dtype=np.float64)
    lo = np.asarray(lower, dtype=np.float64) - center
    hi = np.asarray(upper, dtype=np.float64) - center
    total = 0.0
    for corner in range(8):
        picks = [(corner >> axis) & 1 for axis in range(3)]
        p = np.stack([(hi if pick else lo)[..., axis] for axis, pick in enumerate(picks)], axis=-1)
        sign = (-1) ** (3 - sum(picks))
        # vol{q < p} = corner_volume(-p) by reflection through the centre.
        total = total + sign * corner_volume(-p, radius)
    return np.maximum(total, 0.0)


def window_overlaps(
    rel_vertices: np.ndarray, radius: np.ndarray, voxel_weight: np.ndarray | None = None
) -> np.ndarray:
    """Overlap of each atom's sphere with every voxel of its window.

    Args:
        rel_vertices: ``(N, 3, m + 1)`` voxel-edge coordinates along each axis, relative to each atom's
            centre (increasing), for a window of ``m`` voxels per axis.
        radius: ``(N,)`` atom radii.
        voxel_weight: optional ``(N, 3, m)`` per-axis weights of the window's voxels (0 zeroes a voxel
            slice, e.g. one outside the image).

    Returns:
        ``(N, m, m, m)`` overlap volumes (A^3), float64.
    """
    n, _, m1 = rel_vertices.shape
    # The cumulative volume vol{q < v} is the corner volume at p = -v; per axis it is
    # 2 [p < 0] W(q = 0) + sign(p) W(q = |p|), so W is needed on the grid q = [0, |p_0|, ..., |p_m|],
    # and the voxel value is the difference of consecutive vertices: a (m, m + 2) map per atom and axis.
    p = -rel_vertices
    q = np.concatenate([np.zeros((n, 3, 1)), np.abs(p)], axis=2)  # (N, 3, m + 2)
    vert = np.zeros((n, 3, m1, m1 + 1))
    vert[:, :, :, 0] = 2.0 * (p < 0)
    t = np.arange(m1)
    vert[:, :, t, t + 1] = np.where(p < 0, -1.0, 1.0)
    maps = vert[:, :, 1:, :] - vert[:, :, :-1, :]  # (N, 3, m, m + 2)
    if voxel_weight is not None:
        maps *= voxel_weight[:, :, :, None]

    # W vanishes outside the sphere, so only the few grid points inside it are evaluated.
    q2 = q * q
    inside = (q2[:, 0, :, None, None] + q2[:, 1, None, :, None] + q2[:, 2, None, None, :]) < (radius * radius)[
        :, None, None, None
    ]
    flat = np.flatnonzero(inside)
    at, ia, ib, ic = np.unravel_index(flat, inside.shape)
    w = np.zeros(inside.size)
    w[flat] = _octant_inside(q[at, 0, ia], q[at, 1, ib], q[at, 2, ic], radius[at])
    w = w.reshape(inside.shape)

    # Apply the per-axis maps (z, then y, then x) as batched matrix products.
    g, m = m1 + 1, m1 - 1
    w = np.matmul(w.reshape(n, g * g, g), maps[:, 2].transpose(0, 2, 1))  # (N, a*b, k)
    w = np.matmul(maps[:, 1], w.reshape(n, g, g, m).transpose(0, 2, 1, 3).reshape(n, g, g * m))  # (N, j, a*k)
    w = w.reshape(n, m, g, m).transpose(0, 2, 1, 3).reshape(n, g, m * m)  # (N, a, j*k)
    return np.matmul(maps[:, 0], w).reshape(n, m, m, m)
