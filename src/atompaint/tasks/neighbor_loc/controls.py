"""Zero-parameter predictors of the neighbour direction, and the statistics controls are judged by.

A task that measures an encoder must not be solvable from where density sits in the views.  These
rules read only the density centroid of each view (all channels summed), in the image frame, where
view B lies in direction ``d[label]`` from view A (see :mod:`~atompaint.tasks.neighbor_loc.geometry`):

- ``a_centroid``: the direction of A's centroid -- the structure continues on the side A is dense;
- ``b_centroid``: the direction opposite B's centroid -- B is dense on the side facing A;
- ``a_minus_b_centroid``: the direction of ``centroid(A) - centroid(B)``, both cues together.

Each picks the direction of largest dot product with its vector, among the allowed directions only
(``mask``, as the model's logits are masked); ties, e.g. an empty view, go to the first allowed one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

RULES = ("a_centroid", "b_centroid", "a_minus_b_centroid")


def density_centroids(images: Tensor) -> Tensor:
    """Centroids ``(B, 3)`` of the summed channels of ``images`` ``(B, C, L, L, L)`` in voxels from the
    image centre along the image axes ``(x, y, z)``; zero for an empty image."""
    density = images.sum(dim=1)
    length = density.shape[-1]
    offsets = torch.arange(length, dtype=density.dtype, device=density.device) - (length - 1) / 2
    total = density.sum(dim=(1, 2, 3))
    moments = torch.stack(
        [(density.sum(dim=dims) * offsets).sum(dim=1) for dims in ((2, 3), (1, 3), (1, 2))], dim=1
    )
    return moments / torch.where(total > 0, total, torch.ones_like(total))[:, None]


def mask_logits(logits: Tensor, mask: Tensor | None) -> Tensor:
    """``logits`` with the directions outside ``mask`` (bool, same shape) set to ``-inf``: they get no
    probability, no gradient, and are never the prediction."""
    return logits if mask is None else logits.masked_fill(~mask, float("-inf"))


def masked_argmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """``argmax`` over the last axis of ``scores`` among the entries where ``mask`` is true."""
    return mask_logits(scores, mask).argmax(dim=-1)


def rule_predictions(
    view_a: Tensor, view_b: Tensor, directions: np.ndarray | Tensor, mask: Tensor | None = None
) -> dict[str, Tensor]:
    """The direction index ``(B,)`` each rule of :data:`RULES` predicts for a batch of view pairs."""
    dirs = torch.as_tensor(np.asarray(directions), dtype=view_a.dtype, device=view_a.device)
    ca, cb = density_centroids(view_a), density_centroids(view_b)
    vectors = {"a_centroid": ca, "b_centroid": -cb, "a_minus_b_centroid": ca - cb}
    return {name: masked_argmax(vectors[name] @ dirs.T, mask) for name in RULES}


def rule_hits(batch: Any, directions: np.ndarray | Tensor) -> dict[str, Tensor]:
    """Whether each rule is right ``(B,)`` on a batch with ``view_a``, ``view_b``, ``label`` and ``mask``
    (a :class:`~atompaint.tasks.neighbor_loc.dataset.NeighborLocItem`)."""
    predicted = rule_predictions(batch.view_a, batch.view_b, directions, batch.mask)
    return {name: p == batch.label for name, p in predicted.items()}


def chance_accuracy(mask: Tensor | np.ndarray) -> float:
    """Expected accuracy of a uniform guess among the allowed directions: the mean of ``1 / |S|``
    over the rows of ``mask`` ``(N, K)``."""
    sizes = np.asarray(mask).reshape(len(mask), -1).sum(axis=1)
    if (sizes < 1).any():
        raise ValueError("every example must allow at least one direction")
    return float(np.mean(1.0 / sizes))


def chance_se(mask: Tensor | np.ndarray) -> float:
    """Standard error of the accuracy of uniform guessing among the allowed directions (the null the
    controls are tested against): ``sqrt(sum p (1 - p)) / N`` with ``p = 1 / |S|`` per example."""
    sizes = np.asarray(mask).reshape(len(mask), -1).sum(axis=1)
    p = 1.0 / sizes
    return float(np.sqrt(np.sum(p * (1 - p))) / len(p))


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` independent examples."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) if n > 0 else float("nan")
