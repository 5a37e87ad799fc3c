"""The compiled (numba) rasterization kernel: one pass over the atoms, exact overlap per voxel.

Same mathematics as :func:`atompaint.voxelize.overlap.window_overlaps` (see there), written as scalar
loops: per atom, the octant volume ``W`` on the small grid of vertex offsets (only at grid points inside
the sphere), then the per-axis reflection/difference maps -- three non-zeros per row -- applied one axis
at a time, then the window is added to every channel the atom belongs to.  Compiled code is cached on disk
(``cache=True``), so the JIT cost is paid once per machine, not per process.

``AVAILABLE`` is False when numba cannot be imported; callers then use the numpy path (the functions
here still run, uncompiled, which is only useful for debugging).
"""

from __future__ import annotations

import math

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised only without numba
    AVAILABLE = False

    def njit(**_options):
        return lambda fn: fn

else:
    AVAILABLE = True

_jit = njit(cache=True, fastmath=False, nogil=True)

__all__ = ["AVAILABLE", "rasterize_into"]


@_jit
def _g(z, r):
    """Antiderivative in z of ``r^2 - z^2``."""
    return z * (r * r - z * z / 3.0)


@_jit
def _t(x, z, r):
    """Scalar :func:`atompaint.voxelize.overlap._t`."""
    s = math.sqrt(max(r * r - x * x - z * z, 0.0))
    return (
        _g(z, r) * math.atan2(x, s)
        + x * (r * r - x * x / 3.0) * math.atan2(z, s)
        + (2.0 / 3.0) * x * z * s
        - (2.0 / 3.0) * (r * r * r) * math.atan2(x * z, r * s)
    )


@_jit
def _octant(a, b, c, r):
    """Scalar :func:`atompaint.voxelize.overlap.octant_volume` for ``a^2 + b^2 + c^2 < r^2``.

    The numpy form ``pi/4 [g]_c^top - 1/2 [T(a, .) + T(b, .)]_c^top + a b (top - c)``, simplified: at
    ``z = top`` the square roots in ``T`` are ``b`` and ``a``, and ``atan(u) + atan(1/u) = pi/2`` merges
    six arctangents into three; at ``z = c = 0`` the ``T`` terms vanish.
    """
    lo, mid, hi = a, b, c  # sort: c <- smallest, a <= b the others (W is symmetric)
    if lo > mid:
        lo, mid = mid, lo
    if mid > hi:
        mid, hi = hi, mid
    if lo > mid:
        lo, mid = mid, lo
    a, b, c = mid, hi, lo
    r2 = r * r
    if b == 0.0:
        return math.pi * r2 * r / 6.0
    top = math.sqrt(max(r2 - a * a - b * b, 0.0))
    ab = a * b
    out = (
        ab * (top / 3.0 - c)
        - 0.5 * a * (r2 - a * a / 3.0) * math.atan2(top, b)
        - 0.5 * b * (r2 - b * b / 3.0) * math.atan2(top, a)
        + (r2 * r / 3.0) * math.atan2(r * top, ab)
    )
    if c > 0:
        out += 0.5 * (_t(a, c, r) + _t(b, c, r)) - 0.25 * math.pi * _g(c, r)
    return max(out, 0.0)


@_jit
def _axis_maps(coord, r, half, res, n_vox, m, q, coef, axis):
    """Per-axis window of one atom: first voxel, the W grid offsets ``q`` and the map coefficients.

    Voxel ``i`` of the window gets ``c[i, 0] W(q_0) + c[i, 1] W(q_{i+1}) + c[i, 2] W(q_{i+2})`` with
    ``q = q[axis]``, ``c = coef[axis]``, ``q_0 = 0``; rows of voxels outside the image are zero.
    """
    first = int(math.floor((coord - r + half) / res))
    q[axis, 0] = 0.0
    prev_neg, prev_sign = 0.0, 0.0
    for t in range(m + 1):
        p = coord - ((first + t) * res - half)  # minus the vertex offset from the atom centre
        neg = 1.0 if p < 0 else 0.0
        sign = 1.0 - 2.0 * neg
        q[axis, t + 1] = abs(p)
        if t > 0:
            i = t - 1
            w = 1.0 if 0 <= first + i < n_vox else 0.0
            coef[axis, i, 0] = w * 2.0 * (neg - prev_neg)
            coef[axis, i, 1] = -w * prev_sign
            coef[axis, i, 2] = w * sign
        prev_neg, prev_sign = neg, sign
    return first


@_jit
def rasterize_into(out, coords, rows, image_index, centers, rotations, radius, scale, channel_mask, n_vox, res, m):
    """Add to ``out`` the overlap images of the atoms ``rows``.

    Atom ``rows[i]`` goes to image ``b = image_index[i]`` at ``rotations[b] @ (coords[rows[i]] - centers[b])``
    relative to the image centre.  ``out``: ``(B, C, L, L, L)`` float64; ``radius``, ``scale`` (occupancy
    and fill normalization), ``channel_mask`` (``(N, C)`` bool membership) are indexed like ``coords``;
    ``m``: window voxels per axis.
    """
    half = n_vox * res / 2.0
    n_channels = channel_mask.shape[1]
    g = m + 2
    first = np.zeros(3, dtype=np.int64)
    q = np.zeros((3, g))
    coef = np.zeros((3, m, 3))
    w = np.zeros((g, g, g))
    wz = np.zeros((g, g, m))
    wyz = np.zeros((g, m, m))
    win = np.zeros((m, m, m))
    rel = np.zeros(3)
    near = np.zeros((3, g), dtype=np.int64)
    n_near = np.zeros(3, dtype=np.int64)
    for n in range(rows.shape[0]):
        atom, img = rows[n], image_index[n]
        r = radius[atom]
        outside = False
        for axis in range(3):
            rel[axis] = (
                rotations[img, axis, 0] * (coords[atom, 0] - centers[img, 0])
                + rotations[img, axis, 1] * (coords[atom, 1] - centers[img, 1])
                + rotations[img, axis, 2] * (coords[atom, 2] - centers[img, 2])
            )
            outside |= abs(rel[axis]) >= half + r
        if outside:
            continue
        r2 = r * r
        for axis in range(3):
            first[axis] = _axis_maps(rel[axis], r, half, res, n_vox, m, q, coef, axis)
            count = 0
            for t in range(g):  # W vanishes unless every offset is inside the sphere
                if q[axis, t] < r:
                    near[axis, count] = t
                    count += 1
            n_near[axis] = count
        w[:] = 0.0
        wz[:] = 0.0
        wyz[:] = 0.0
        for ia in range(n_near[0]):
            a = near[0, ia]
            for ib in range(n_near[1]):
                b = near[1, ib]
                qab2 = q[0, a] * q[0, a] + q[1, b] * q[1, b]
                for ic in range(n_near[2]):
                    c = near[2, ic]
                    if qab2 + q[2, c] * q[2, c] < r2:
                        w[a, b, c] = _octant(q[0, a], q[1, b], q[2, c], r)
                for k in range(m):  # z map
                    cz = coef[2, k]
                    wz[a, b, k] = cz[0] * w[a, b, 0] + cz[1] * w[a, b, k + 1] + cz[2] * w[a, b, k + 2]
            for j in range(m):  # y map
                for k in range(m):
                    cy = coef[1, j]
                    wyz[a, j, k] = cy[0] * wz[a, 0, k] + cy[1] * wz[a, j + 1, k] + cy[2] * wz[a, j + 2, k]
        for i in range(m):  # x map
            for j in range(m):
                for k in range(m):
                    cx = coef[0, i]
                    win[i, j, k] = cx[0] * wyz[0, j, k] + cx[1] * wyz[i + 1, j, k] + cx[2] * wyz[i + 2, j, k]
        s = scale[atom]
        for ch in range(n_channels):
            if not channel_mask[atom, ch]:
                continue
            for i in range(m):
                x = first[0] + i
                if x < 0 or x >= n_vox:
                    continue
                for j in range(m):
                    y = first[1] + j
                    if y < 0 or y >= n_vox:
                        continue
                    for k in range(m):
                        z = first[2] + k
                        if 0 <= z < n_vox:
                            out[img, ch, x, y, z] += s * win[i, j, k]


