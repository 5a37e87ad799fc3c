"""Choosing origins: the points of a structure around which views are taken."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..structures import AtomTable


@dataclass(frozen=True)
class OriginParams:
    """Which atoms are origins.

    An atom is an origin when it is a heavy atom (and not water) and at least ``min_neighbors`` heavy
    atoms -- itself excluded -- lie within ``radius_A`` of it: views centred there show dense
    structure, not solvent.  ``elements`` optionally restricts origins to some elements (e.g. ``("C",)``).
    """

    radius_A: float = 5.0
    min_neighbors: int = 20
    elements: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.radius_A > 0:
            raise ValueError(f"origin radius_A must be positive, not {self.radius_A!r}")
        if self.min_neighbors < 0:
            raise ValueError(f"min_neighbors must be >= 0, not {self.min_neighbors!r}")
        if self.elements is not None:
            object.__setattr__(self, "elements", tuple(e.upper() for e in self.elements))

    def to_dict(self) -> dict:
        return asdict(self)


def select_origins(atoms: AtomTable, params: OriginParams = OriginParams()) -> tuple[np.ndarray, np.ndarray]:
    """``(coords (M, 3) float32, neighbor_counts (M,) int32)`` of the origins of ``atoms``."""
    from scipy.spatial import cKDTree

    heavy = ~atoms.is_hydrogen & ~atoms.is_water
    coords = atoms.coords[heavy].astype(np.float64)
    if len(coords) == 0:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.int32)
    tree = cKDTree(coords)
    counts = tree.query_ball_point(coords, params.radius_A, return_length=True) - 1
    keep = counts >= params.min_neighbors
    if params.elements is not None:
        keep &= np.isin(atoms.element[heavy], params.elements)
    return coords[keep].astype(np.float32), counts[keep].astype(np.int32)
