"""How the direction of an example is chosen: the neighbour-task constructions.

All constructions place view A on an origin of the index and view B one neighbour distance ``D``
away in direction ``d[label]`` (image frame).  They differ in which (origin, orientation) draws they
accept and which directions the label may take -- the set ``S`` whose mask the model's logits get:

- ``dense-b`` (the original task): label uniform over all ``K`` directions, redrawn (direction,
  orientation, noise) until B's centre is dense.  B lies where the structure continues, which view A
  shows: the label leaks through A.
- ``balanced``: ``S`` is the set of directions whose noise-free neighbour centre is dense; draws with
  ``|S| < min_dense`` are rejected, the label is uniform over ``S`` and logits outside ``S`` are
  masked.  View A then says nothing about the label beyond ``S`` (chance = mean ``1 / |S|``), but
  view B is dense on its side facing A, so B's density points back to A.
- ``balanced-both``: ``balanced``, and seen from every candidate B the directions opposite ``S`` are
  dense too (every ``o + D (d_k - d_j)``, ``k, j`` in ``S``): the side of B facing A is then one of
  ``|S|`` dense sides, not the only one.  Checked for every candidate label, so the acceptance does
  not depend on the label drawn.  ``balanced`` keeps its best draw as a counted fallback when none
  qualifies; ``balanced-both`` and ``all-dense`` raise :class:`ConstructionError` instead.
- ``all-dense``: every neighbour centre of A is dense, and so is every neighbour centre of every
  candidate B (``o + D (d_k + d_j)`` for all ``k, j``); no mask, chance ``1 / K``.  Single chains
  almost never allow it; crystal contacts or assemblies (``OriginParams.context``) can.

The checks use the density criterion of the origins (:class:`~atompaint.origins.AtomDensity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atompaint.origins import AtomDensity
from atompaint.tasks.neighbor_loc.geometry import neighbor_centers

CONSTRUCTIONS = ("dense-b", "balanced", "balanced-both", "all-dense")


class ConstructionError(ValueError):
    """No draw satisfied the construction within the allowed number of draws."""


@dataclass(frozen=True)
class DrawCheck:
    """What a construction makes of one (origin, orientation) draw.

    ``dense``: bool ``(K,)``, the directions whose noise-free neighbour centre is dense; ``accepted``:
    the draw satisfies the construction; ``allowed``: the directions the label is drawn from (the
    mask); ``checked_points``: how many centres were tested.
    """

    dense: np.ndarray
    accepted: bool
    allowed: np.ndarray
    checked_points: int


def check_draw(
    construction: str,
    density: AtomDensity,
    origin: np.ndarray,
    rotation: np.ndarray,
    directions: np.ndarray,
    distance_A: float,
    min_dense: int = 2,
) -> DrawCheck:
    """Test one draw (view A at ``origin``, rotated by ``rotation``) against ``construction``."""
    if construction not in CONSTRUCTIONS:
        raise ValueError(f"unknown construction {construction!r}; choose from {CONSTRUCTIONS}")
    directions = np.asarray(directions, dtype=np.float64)
    dense = np.asarray(density.is_dense(density.counts(neighbor_centers(origin, rotation, directions, distance_A))))
    k = len(directions)
    if construction == "dense-b":
        return DrawCheck(dense, True, np.ones(k, dtype=bool), k)
    if construction == "all-dense":
        if not dense.all():
            return DrawCheck(dense, False, np.ones(k, dtype=bool), k)
        offsets = directions[:, None, :] + directions[None, :, :]
    else:
        if dense.sum() < min_dense:
            return DrawCheck(dense, False, dense, k)
        if construction == "balanced":
            return DrawCheck(dense, True, dense, k)
        chosen = directions[dense]
        offsets = chosen[:, None, :] - chosen[None, :, :]
    offsets = offsets.reshape(-1, 3)
    offsets = offsets[np.linalg.norm(offsets, axis=1) > 1e-6]  # the origin itself is dense
    offsets = np.unique(np.round(offsets, 9), axis=0)
    points = neighbor_centers(origin, rotation, offsets, distance_A)
    accepted = bool(np.all(density.is_dense(density.counts(points))))
    allowed = np.ones(k, dtype=bool) if construction == "all-dense" else dense
    return DrawCheck(dense, accepted, allowed, k + len(points))
