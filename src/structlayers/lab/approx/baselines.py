"""Baselines at an equal parameter budget (the paired test that judges "beats SVD" is in
:mod:`structlayers.lab.approx.stats`).

- Truncated SVD: the best rank-``r`` matrix (Eckart-Young), charged its exact number of degrees of
  freedom ``r (m + n - r)`` (the dimension of the manifold of rank-``r`` ``m x n`` matrices; storing
  ``U`` and ``V`` as the ``lowrank`` layer does costs ``r (m + n)``).  ``r = min(m, n)`` costs
  ``m n``: at a budget of ``m n`` the baseline is the dense matrix itself, with error 0.
- Local dimension: what a structured layer's parameters buy, the rank of the Jacobian of its dense
  matrix with respect to its parameters at a point (redundant parameters, such as the scalings
  that two factors can trade, do not count); baselines can be charged it instead of the nominal count.
- Random features: a fixed random projection ``R (k x n)`` and the best trained readout
  ``V (m x k)`` (least squares, ``W R^+ R``), ``m k`` parameters: what a budget buys without any
  learned structure on the input side.
"""

from __future__ import annotations

import torch
from torch import Tensor

from structlayers.base import StructuredLinear

#: Singular values of the Jacobian below this fraction of the largest count as zero.
RANK_RTOL = 1e-9
#: Layers with more parameters get no local dimension unless asked for (``charge="dimension"``): the
#: Jacobian costs about one backward pass per entry of the dense matrix.
DIMENSION_MAX_PARAMS = 1024


def svd_params(rank: int, m: int, n: int) -> int:
    """Degrees of freedom of an ``m x n`` matrix of rank ``rank``: ``r (m + n - r)``."""
    return rank * (m + n - rank)


def svd_rank_for_budget(params: int, m: int, n: int | None = None) -> int:
    """The largest rank ``r <= min(m, n)`` with ``r (m + n - r) <= params``."""
    n = m if n is None else n
    rank = 0
    while rank < min(m, n) and svd_params(rank + 1, m, n) <= params:
        rank += 1
    return rank


def svd_error(target: Tensor, rank: int) -> float:
    """Relative Frobenius error of the best rank-``rank`` approximation (Eckart-Young)."""
    s = torch.linalg.svdvals(target.double())
    return float(torch.sqrt((s[rank:] ** 2).sum() / (s**2).sum())) if rank < s.numel() else 0.0


def random_features_error(target: Tensor, params: int, seed: int = 0) -> tuple[int, float]:
    """``(k, error)``: the relative Frobenius error of ``W R^+ R`` for a Gaussian ``R (k x n)``
    with ``k = min(n, params // m)`` (``m k`` trained numbers), drawn from ``seed``."""
    m, n = target.shape
    k = min(n, params // m)
    if k == 0:
        return 0, 1.0
    if k == n:
        return k, 0.0
    g = torch.Generator().manual_seed(10_000 + seed)
    r = torch.randn(k, n, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(r.T)  # orthonormal basis of R's row space, (n, k)
    w = target.double()
    approx = (w @ q) @ q.T
    return k, float(torch.linalg.norm(w - approx) / torch.linalg.norm(w))


def local_dimension(layer: StructuredLinear, rtol: float = RANK_RTOL) -> int:
    """The rank of ``d vec(W) / d theta`` at the layer's current parameters ``theta`` (float64,
    ``W`` its dense weight): the dimension of the set of matrices the family reaches near this
    point, at most its parameter count."""
    work = layer.double()
    params = {name: p.detach() for name, p in work.named_parameters()}
    eye = torch.eye(work.in_features, dtype=torch.float64, device=next(iter(params.values())).device)
    bias = (torch.func.functional_call(work, params, (torch.zeros_like(eye[:1]),))
            if getattr(work, "bias", None) is not None else None)

    def dense(values: dict[str, Tensor]) -> Tensor:
        out = torch.func.functional_call(work, values, (eye,))
        return (out - bias if bias is not None else out).reshape(-1)

    jacobian = torch.func.jacrev(dense, chunk_size=256)(params)
    matrix = torch.cat([j.reshape(j.shape[0], -1) for j in jacobian.values()], dim=1)
    s = torch.linalg.svdvals(matrix)
    return int((s > rtol * s[0]).sum()) if s.numel() and s[0] > 0 else 0
