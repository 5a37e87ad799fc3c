"""A columnar atom table: one numpy array per attribute, one row per atom.

Columnar storage keeps a loaded structure compact (a 20k-atom structure is ~1 MB), makes selections
vectorized (no per-atom Python objects, no pandas string comparisons in the sampling loop), and pickles
cheaply to data-loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

#: Entity types as stored in :attr:`AtomTable.entity_type` (gemmi's names, lower case).
ENTITY_TYPES = ("unknown", "polymer", "non-polymer", "branched", "water")


@dataclass(frozen=True, eq=False)
class AtomTable:
    """The atoms of one structure (or a selection of them), one array per column.

    ``coords`` is float32 ``(N, 3)`` in Angstrom; string columns are fixed-width numpy unicode arrays,
    so selections and comparisons are vectorized.
    """

    coords: np.ndarray  # float32 (N, 3), Angstrom
    element: np.ndarray  # <U2, upper case ("C", "SE"); "X" when unknown
    atom_name: np.ndarray  # <U4
    occupancy: np.ndarray  # float32 (N,)
    b_factor: np.ndarray  # float32 (N,)
    residue_name: np.ndarray  # <U5
    residue_id: np.ndarray  # int32 (N,), author sequence number
    insertion_code: np.ndarray  # <U1, "" when none
    chain: np.ndarray  # <U4
    entity_type: np.ndarray  # <U11, one of ENTITY_TYPES
    is_hetero: np.ndarray  # bool (N,), HETATM record
    altloc: np.ndarray  # <U1, "" when none
    model: np.ndarray  # int16 (N,), model number
    #: int16 (N,): 0 for the atoms of the file (or of the biological assembly built from it), k > 0
    #: for the atoms of its k-th crystal symmetry mate (:func:`atompaint.structures.load`'s ``context``).
    symmetry_copy: np.ndarray | None = None
    name: str = ""  # where it came from (file stem), for error messages and indexing

    def __post_init__(self) -> None:
        n = len(self.coords)
        if self.symmetry_copy is None:
            object.__setattr__(self, "symmetry_copy", np.zeros(n, dtype=np.int16))
        if self.coords.shape != (n, 3):
            raise ValueError(f"coords must have shape (N, 3), got {self.coords.shape}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and len(value) != n:
                raise ValueError(f"column {f.name!r} has {len(value)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.coords)

    def __repr__(self) -> str:
        return f"AtomTable(name={self.name!r}, atoms={len(self)})"

    def columns(self) -> dict[str, np.ndarray]:
        """The columns by name (no copies)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}

    def select(self, mask_or_index: Any) -> AtomTable:
        """The rows picked by a boolean mask or an integer index array (a new table)."""
        return AtomTable(**{k: v[mask_or_index] for k, v in self.columns().items()}, name=self.name)

    @property
    def is_hydrogen(self) -> np.ndarray:
        return np.isin(self.element, ("H", "D"))

    @property
    def is_water(self) -> np.ndarray:
        return self.entity_type == "water"

    def to_dataframe(self) -> Any:
        """The table as a :class:`pandas.DataFrame` with ``x``, ``y``, ``z`` columns."""
        import pandas as pd

        cols = self.columns()
        coords = cols.pop("coords")
        return pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "z": coords[:, 2], **cols})

    @classmethod
    def concatenate(cls, tables: list[AtomTable], name: str = "") -> AtomTable:
        """One table holding the rows of all ``tables`` in order."""
        if not tables:
            raise ValueError("cannot concatenate an empty list of atom tables")
        keys = tables[0].columns().keys()
        return cls(**{k: np.concatenate([t.columns()[k] for t in tables]) for k in keys}, name=name)

    @classmethod
    def from_arrays(
        cls,
        coords: np.ndarray,
        element: Any,
        occupancy: Any = 1.0,
        name: str = "",
        **columns: Any,
    ) -> AtomTable:
        """A table from coordinates and elements, other columns defaulted (for generated structures)."""
        coords = np.asarray(coords, dtype=np.float32).reshape(-1, 3)
        n = len(coords)

        def col(value: Any, dtype: Any) -> np.ndarray:
            arr = np.asarray(value, dtype=dtype)
            return np.broadcast_to(arr, (n,)).copy() if arr.ndim == 0 else arr

        return cls(
            coords=coords,
            element=np.char.upper(col(element, "<U2")),
            atom_name=col(columns.pop("atom_name", element), "<U4"),
            occupancy=col(occupancy, np.float32),
            b_factor=col(columns.pop("b_factor", 0.0), np.float32),
            residue_name=col(columns.pop("residue_name", "UNK"), "<U5"),
            residue_id=col(columns.pop("residue_id", np.arange(1, n + 1)), np.int32),
            insertion_code=col(columns.pop("insertion_code", ""), "<U1"),
            chain=col(columns.pop("chain", "A"), "<U4"),
            entity_type=col(columns.pop("entity_type", "polymer"), "<U11"),
            is_hetero=col(columns.pop("is_hetero", False), bool),
            altloc=col(columns.pop("altloc", ""), "<U1"),
            model=col(columns.pop("model", 1), np.int16),
            symmetry_copy=col(columns.pop("symmetry_copy", 0), np.int16),
            name=name,
            **columns,
        )
