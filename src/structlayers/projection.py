"""Closed-form projections of a dense map onto structured families, the starting points of
``replace(init_from="project" | "fit")`` (each plugin's ``project_`` uses them).

Conventions: a layer maps row vectors, ``y = x M (+ b)`` with ``M = weight.T``; a square layer of size
``N >= max(in, out)`` pads ``x`` with zeros and keeps the first ``out`` outputs, so only the top-left
``(in, out)`` block of its ``N x N`` map is observed.  The other entries are free: the projections
below fill them with the current approximation's own entries at every sweep (least squares over the
observed entries only, by imputation), instead of pulling them towards zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def observed_target(weight: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``(target, mask)``: the ``(size, size)`` float64 map holding ``weight.T`` in its top-left
    block (zeros elsewhere), and the boolean mask of that block."""
    out_f, in_f = weight.shape
    target = torch.zeros(size, size, dtype=torch.float64)
    target[:in_f, :out_f] = weight.detach().double().cpu().T
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:in_f, :out_f] = True
    return target, mask


def padded_bias(bias: Tensor | None, size: int) -> Tensor:
    """``bias`` (or zeros) as a float64 vector of length ``size`` (zeros past its end)."""
    out = torch.zeros(size, dtype=torch.float64)
    if bias is not None:
        out[: bias.numel()] = bias.detach().double().cpu()
    return out


def low_rank_factors(weight: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """``(U, V)`` with ``x U V`` the best rank-``rank`` approximation of ``x weight.T`` in Frobenius
    norm (Eckart-Young: the truncated SVD, its singular values split evenly between the factors)."""
    p, s, qh = torch.linalg.svd(weight.detach().double().cpu(), full_matrices=False)
    root = s[:rank].sqrt()
    return qh[:rank].T * root, root[:, None] * p[:, :rank].T


def block_diagonal(target: Tensor, groups: int) -> Tensor:
    """The ``(groups, b, b)`` diagonal blocks of ``target`` (``N x N``, ``N = groups * b``): the
    Frobenius-nearest block-diagonal matrix keeps them and drops everything else."""
    b = target.shape[0] // groups
    return torch.stack([target[g * b:(g + 1) * b, g * b:(g + 1) * b] for g in range(groups)])


def diagonal_transform_als(
    transform: Tensor,
    inverse: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    shuffle: Tensor | None = None,
    real_part: bool = False,
    sweeps: int = 20,
    tol: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Diagonals ``(a, d)`` of ``M = diag(a) T P diag(d) T^-1`` fitted to ``target`` on ``mask`` by
    alternating least squares, each half-step exact and in closed form:

    - ``d`` for fixed ``a``: ``T^-1`` is unitary, so ``||L diag(d) T^-1 - G|| = ||L diag(d) - G T^-H||``
      separates over columns: ``d_k = <l_k, (G T^-H)_k> / ||l_k||^2`` with ``L = diag(a) T P``;
    - ``a`` for fixed ``d``: ``M = diag(a) K`` separates over rows: ``a_i = <K_i, G_i> / ||K_i||^2``.

    Starting from ``a = 1`` the first ``d`` is the exact projection onto ``T diag(d) T^-1`` (for the
    DCT, the matrices it diagonalises).  ``real_part``: the layer outputs ``Re(x M)`` (AFDF), so the
    ``a`` step fits ``Re(a_i K_i)`` (two real unknowns per row) and the ``d`` step
    ``Re(L diag(d) T^-1)`` (:func:`_real_part_diagonal`).  ``shuffle`` is the index of the inner
    permutation (``z[..., index]``).  Entries outside ``mask`` are re-imputed each sweep, which
    converges slowly (a map with ``out < in`` needs ~100-200 sweeps): ``tol > 0`` stops once a sweep
    lowers the squared error on ``mask`` by less than ``tol`` relative.
    """
    n = target.shape[0]
    dtype = transform.dtype
    perm = torch.eye(n, dtype=torch.float64)[:, shuffle] if shuffle is not None else None
    tp = transform @ perm.to(dtype) if perm is not None else transform
    inv_h = inverse.conj().T
    g = target.clone()
    a = torch.ones(n, dtype=dtype)
    d = torch.ones(n, dtype=dtype)
    previous = math.inf
    for _ in range(max(1, sweeps)):
        lmat = a[:, None] * tp
        if real_part:
            d = _real_part_diagonal(lmat, inverse, g)
        else:
            rhs = g.to(dtype) @ inv_h
            d = (lmat.conj() * rhs).sum(0) / (lmat.abs() ** 2).sum(0).clamp_min(1e-30)
        k = tp * d[None, :] @ inverse
        if real_part:
            kr, ki = k.real, k.imag
            # min || ar * kr - ai * ki - g ||^2 per row: a 2 x 2 normal system.
            s_rr, s_ii, s_ri = (kr * kr).sum(1), (ki * ki).sum(1), (kr * ki).sum(1)
            b_r, b_i = (kr * g).sum(1), -(ki * g).sum(1)
            det = (s_rr * s_ii - s_ri**2).clamp_min(1e-30)
            ar = (s_ii * b_r + s_ri * b_i) / det
            ai = (s_ri * b_r + s_rr * b_i) / det
            a = torch.complex(ar, ai)
            current = (a[:, None] * k).real
        else:
            a = (k.conj() * g.to(dtype)).sum(1) / (k.abs() ** 2).sum(1).clamp_min(1e-30)
            current = (a[:, None] * k).real if dtype.is_complex else a[:, None] * k
        g = torch.where(mask, target, current)
        if tol > 0:
            error = float((current - target)[mask].square().sum())
            if previous < math.inf and previous - error <= tol * previous:
                break
            previous = error
    return a, d


def _real_part_diagonal(lmat: Tensor, rmat: Tensor, g: Tensor) -> Tensor:
    """Complex ``d`` minimising ``||Re(L diag(d) R) - G||_F``: linear least squares in
    ``(Re d, Im d)`` whose ``2N x 2N`` normal equations come from ``N x N`` products.  With
    ``u_k = vec(l_k r_k^T)``: ``S1 = (L^T L) * (R R^T)`` holds ``<u_k, u_l>`` and
    ``S2 = (L^T conj L) * (R R^H)`` holds ``<u_k, conj u_l>``, and the real inner products of real and
    imaginary parts are their half sums and differences.  The system is singular when ``d`` has
    directions with no effect on the real part (bins ``k`` and ``-k`` of a DFT); a tiny ridge picks
    the smallest solution."""
    n = lmat.shape[1]
    s1 = (lmat.T @ lmat) * (rmat @ rmat.T)
    s2 = (lmat.T @ lmat.conj()) * (rmat @ rmat.conj().T)
    rr, ii, ri = (s1 + s2).real / 2, (s2 - s1).real / 2, (s1 - s2).imag / 2
    # Unknowns (p, q) with d = p + i q: Re(u d) = p Re u - q Im u.
    gram = torch.cat([torch.cat([rr, -ri], 1), torch.cat([-ri.T, ii], 1)], 0)
    proj = torch.diagonal(lmat.T @ g.to(lmat.dtype) @ rmat.T)
    rhs = torch.cat([proj.real, -proj.imag])
    ridge = 1e-10 * float(torch.diagonal(gram).mean().clamp_min(1e-30))
    sol = torch.linalg.solve(gram + ridge * torch.eye(2 * n, dtype=gram.dtype), rhs)
    return torch.complex(sol[:n], sol[n:])


def relative_error(approx: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """``||approx - target|| / ||target||`` over ``mask`` (everything when ``None``)."""
    diff, ref = approx - target, target
    if mask is not None:
        diff, ref = diff[mask], ref[mask]
    return float(torch.linalg.norm(diff) / torch.linalg.norm(ref).clamp_min(1e-30))
