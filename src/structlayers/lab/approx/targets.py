"""Targets of the approximation experiment and the truncated-SVD baseline."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def gaussian_target(n_in: int, n_out: int | None = None, seed: int = 0) -> Tensor:
    """A random ``(n_out, n_in)`` matrix with N(0, 1/n_in) entries (unit-variance outputs)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_out or n_in, n_in, generator=g, dtype=torch.float64) / math.sqrt(n_in)


def svd_error(target: Tensor, rank: int) -> float:
    """Relative Frobenius error of the best rank-``rank`` approximation (Eckart-Young)."""
    s = torch.linalg.svdvals(target.double())
    return float(torch.sqrt((s[rank:] ** 2).sum() / (s**2).sum())) if rank < s.numel() else 0.0
