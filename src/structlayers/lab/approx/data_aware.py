"""Data-aware approximation: the error a trained layer's own inputs see.

For a weight ``W (out, in)`` and recorded inputs ``X (n, in)``, a replacement ``W_hat`` changes the
layer's outputs by ``||(W_hat - W) X^T||_F``; with the inputs' second moment ``C = X^T X / n`` and
its symmetric root ``S = C^{1/2}`` that is ``sqrt(n) ||(W_hat - W) S||_F``.  So a fit to ``S``'s
``in`` rows as inputs and ``S W^T`` as outputs minimises the data error exactly (``in`` samples
instead of ``n``).  The best rank-``r`` matrix under this error is ``[W S]_r S^+`` (the truncated
SVD of ``W S`` mapped back; ``S^+`` the pseudo-inverse, which loses nothing: ``[W S]_r``'s rows lie
in ``S``'s range).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from structlayers.base import StructuredLinear
from structlayers.surgery.fit import FitOptions, FitResult, fit_outputs

#: Eigenvalues of ``C`` below this fraction of the largest are treated as 0 (directions no input takes).
EIG_RTOL = 1e-10


@dataclass(frozen=True)
class Whitening:
    """``root = C^{1/2}`` and ``pinv_root = (C^{1/2})^+`` of the inputs' second moment, float64."""

    root: Tensor
    pinv_root: Tensor
    samples: int

    @classmethod
    def from_inputs(cls, x: Tensor) -> Whitening:
        """From inputs ``x (n, in)`` (rows are samples)."""
        x = x.double().reshape(-1, x.shape[-1])
        values, vectors = torch.linalg.eigh(x.T @ x / x.shape[0])
        keep = values > EIG_RTOL * values.max()
        root = torch.where(keep, values.clamp_min(0).sqrt(), torch.zeros_like(values))
        inverse = torch.where(keep, 1 / root, torch.zeros_like(values))
        return cls((vectors * root) @ vectors.T, (vectors * inverse) @ vectors.T, int(x.shape[0]))

    @property
    def effective_rank(self) -> int:
        return int(torch.linalg.matrix_rank(self.root, rtol=EIG_RTOL**0.5))


def relative_error(weight: Tensor, target: Tensor, whitening: Whitening | None = None) -> float:
    """``||(weight - target) S|| / ||target S||`` (``S`` = identity without ``whitening``: Frobenius)."""
    diff, ref = weight.double() - target, target
    if whitening is not None:
        diff, ref = diff @ whitening.root, ref @ whitening.root
    return float(torch.linalg.norm(diff) / torch.linalg.norm(ref))


def truncated_svd(target: Tensor, rank: int, whitening: Whitening | None = None) -> Tensor:
    """The best rank-``rank`` matrix for :func:`relative_error` with the same ``whitening``."""
    a = target @ whitening.root if whitening is not None else target
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    best = (u[:, :rank] * s[:rank]) @ vh[:rank]
    return best @ whitening.pinv_root if whitening is not None else best


def fit_data(layer: StructuredLinear, target: Tensor, whitening: Whitening, fit: FitOptions) -> FitResult:
    """Fit ``layer`` (no bias) in place to minimise ``||(W_hat - W) S||_F`` from where it stands."""
    root = whitening.root.to(target.dtype)
    return fit_outputs(layer, root, root @ target.T, target_weight=target, fit=fit)
