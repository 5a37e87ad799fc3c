"""Choosing origins: the points of a structure around which views are taken.

One density criterion decides both where views may be centred (the origins, selected once per
structure into the index) and whether a view placed elsewhere -- view B of a neighbour-location
example -- shows enough structure: the heavy, non-water atoms within ``radius_A`` of the point,
each counted with its occupancy, must add up to at least ``min_atoms``.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ..structures import AtomTable, is_non_loi
from ..structures.symmetry import CONTEXTS

#: Slack for sums of occupancies (0.33 + 0.67 must count as one atom).
_COUNT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class OriginParams:
    """The density criterion, and which atoms are origins.

    A point is *dense* when the heavy (non-hydrogen), non-water atoms within ``radius_A`` of it
    number at least ``min_atoms``, each atom counted with its occupancy when ``occupancy_weighted``
    (half-occupied alternate conformations then count once in total, not twice).  An atom at the
    point counts itself.  The origins of a structure are its dense heavy atoms, optionally only those
    of ``elements`` (e.g. ``("C",)``): views centred there show packed structure, not solvent or a
    lone surface side chain.

    ``drop_non_loi``: atoms of the wwPDB non-LOI blocklist (crystallization additives, buffers,
    ions: :data:`~atompaint.structures.NON_LOI_RESIDUES`) neither count nor become origins, as
    upstream does; they are still imaged.  An index records the setting with the rest of the
    criterion; indexes written before the setting existed kept them (``from_dict``).

    ``context``: the structure the density is measured in (:func:`atompaint.structures.load`):
    ``"file"`` (the atoms of the file), ``"crystal"`` (with its symmetry mates within
    ``context_radius_A``; origins stay on the file's own atoms) or ``"assembly"`` (its first
    biological assembly).  Views are imaged in the same context.

    The defaults, 25 atoms within 5 A, occupancy weighted, are those of the upstream atompaint
    implementation (``kalekundert/atompaint``, ``OriginParams(radius_A=5, min_nearby_atoms=25)``,
    whose count includes the atom itself and weights by occupancy).
    """

    radius_A: float = 5.0
    min_atoms: float = 25.0
    occupancy_weighted: bool = True
    elements: tuple[str, ...] | None = None
    drop_non_loi: bool = True
    context: Literal["file", "crystal", "assembly"] = "file"
    context_radius_A: float = 40.0

    def __post_init__(self) -> None:
        if not self.radius_A > 0:
            raise ValueError(f"origin radius_A must be positive, not {self.radius_A!r}")
        if not self.min_atoms >= 0:
            raise ValueError(f"min_atoms must be >= 0, not {self.min_atoms!r}")
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, not {self.context!r}")
        if not self.context_radius_A > 0:
            raise ValueError(f"context_radius_A must be positive, not {self.context_radius_A!r}")
        if self.elements is not None:
            object.__setattr__(self, "elements", tuple(e.upper() for e in self.elements))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def load_context(self) -> dict:
        """The keywords of :func:`atompaint.structures.load` that build this context."""
        return {"context": self.context, "context_radius_A": self.context_radius_A}

    @classmethod
    def from_dict(cls, values: dict) -> OriginParams:
        """The criterion an index recorded; a record without ``drop_non_loi`` predates the setting,
        when the additives were kept."""
        values = {"drop_non_loi": False, **values}
        if values.get("elements") is not None:
            values["elements"] = tuple(values["elements"])
        return cls(**values)


class AtomDensity:
    """The density criterion of :class:`OriginParams` evaluated at any points of one structure.

    Holds a KD-tree of the structure's heavy, non-water atoms (without the non-LOI residues when
    ``params.drop_non_loi``) and their weights (occupancies, or ones); :meth:`counts` is the weighted
    number of those atoms within ``radius_A`` of each point.  Symmetry mates
    (``atoms.symmetry_copy > 0``) count, but only the file's own atoms become origins.
    """

    def __init__(self, atoms: AtomTable, params: OriginParams = OriginParams()):
        from scipy.spatial import cKDTree

        self.params = params
        keep = ~atoms.is_hydrogen & ~atoms.is_water
        if params.drop_non_loi:
            keep &= ~is_non_loi(atoms)
        self.may_be_origin = (atoms.symmetry_copy == 0)[keep]
        self.coords = atoms.coords[keep].astype(np.float64)
        self.element = atoms.element[keep]
        n = len(self.coords)
        self.weights = atoms.occupancy[keep].astype(np.float64) if params.occupancy_weighted else np.ones(n)
        self._tree = cKDTree(self.coords) if n else None

    def __len__(self) -> int:
        return len(self.coords)

    def counts(self, points: np.ndarray) -> np.ndarray:
        """Weighted atom counts ``(M,)`` float64 within ``radius_A`` of each of ``points`` ``(M, 3)``."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if self._tree is None or len(points) == 0:
            return np.zeros(len(points))
        hits = self._tree.query_ball_point(points, self.params.radius_A, return_sorted=False)
        lengths = np.fromiter(map(len, hits), dtype=np.int64, count=len(hits))
        rows = np.fromiter(itertools.chain.from_iterable(hits), dtype=np.int64, count=int(lengths.sum()))
        owner = np.repeat(np.arange(len(points)), lengths)
        return np.bincount(owner, weights=self.weights[rows], minlength=len(points))

    def count(self, point: np.ndarray) -> float:
        """The weighted atom count around one point (:meth:`counts` without the batching overhead)."""
        if self._tree is None:
            return 0.0
        rows = self._tree.query_ball_point(np.asarray(point, dtype=np.float64), self.params.radius_A)
        return float(self.weights[rows].sum()) if rows else 0.0

    def is_dense(self, counts: np.ndarray | float) -> np.ndarray | bool:
        """Whether counts (from :meth:`counts`) pass ``min_atoms``."""
        return np.asarray(counts) >= self.params.min_atoms - _COUNT_TOLERANCE

    def origins(self) -> tuple[np.ndarray, np.ndarray]:
        """``(coords (M, 3) float32, counts (M,) float64)`` of the structure's origins."""
        counts = self.counts(self.coords)
        keep = self.is_dense(counts) & self.may_be_origin
        if self.params.elements is not None:
            keep &= np.isin(self.element, self.params.elements)
        return self.coords[keep].astype(np.float32), counts[keep]


def select_origins(atoms: AtomTable, params: OriginParams = OriginParams()) -> tuple[np.ndarray, np.ndarray]:
    """``(coords (M, 3) float32, weighted_counts (M,) float64)`` of the origins of ``atoms``."""
    return AtomDensity(atoms, params).origins()
