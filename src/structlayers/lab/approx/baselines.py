"""Baselines at an equal parameter budget and the paired bootstrap that judges "beats SVD".

- Truncated SVD: the best rank-``r`` matrix (Eckart-Young), charged its exact number of degrees of
  freedom ``r (m + n - r)`` (the dimension of the manifold of rank-``r`` ``m x n`` matrices; storing
  ``U`` and ``V`` as the ``lowrank`` layer does costs ``r (m + n)``).  ``r = min(m, n)`` costs
  ``m n``: at a budget of ``m n`` the baseline is the dense matrix itself, with error 0.
- Random features: a fixed random projection ``R (k x n)`` and the best trained readout
  ``V (m x k)`` (least squares, ``W R^+ R``), ``m k`` parameters: what a budget buys without any
  learned structure on the input side.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


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


def bootstrap_ci(values: list[float], resamples: int = 10_000, level: float = 0.95, seed: int = 0
                 ) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values`` (NaNs when fewer than 2)."""
    if len(values) < 2:
        return math.nan, math.nan
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def verdict(low: float, high: float, margin: float = 1e-6) -> str:
    """``yes`` when the whole interval of (layer error - baseline error) lies below ``-margin``,
    ``no`` when above ``+margin``, ``tie`` otherwise (the margin absorbs fits that reach the
    baseline to within the optimiser's tolerance), ``?`` without an interval (one seed)."""
    if math.isnan(low) or math.isnan(high):
        return "?"
    if high < -margin:
        return "yes"
    if low > margin:
        return "no"
    return "tie"
