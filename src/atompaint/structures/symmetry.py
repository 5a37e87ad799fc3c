"""Context beyond one asymmetric unit: crystal symmetry mates and biological assemblies.

A single chain ends where its crystal contacts and partner chains would begin, so most directions
out of it look empty.  :func:`add_symmetry_mates` surrounds the atoms of a file with the copies the
cell and space group generate nearby; :func:`atompaint.structures.load` with ``context="assembly"``
builds a biological assembly (gemmi's ``make_assembly``) instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from .atoms import AtomTable

#: Mate atoms closer than this to an atom of the file are the same atom on a special position.
_SAME_ATOM_A = 0.1

#: Where the symmetry context comes from (see :func:`atompaint.structures.load`).
CONTEXTS = ("file", "crystal", "assembly")


def add_symmetry_mates(
    atoms: AtomTable,
    orthogonalization: np.ndarray,
    operations: Sequence[np.ndarray],
    radius_A: float,
) -> AtomTable:
    """``atoms`` followed by every atom of their crystal symmetry copies within ``radius_A`` of one
    of them, each copy numbered in ``symmetry_copy`` (1, 2, ...).

    Args:
        orthogonalization: ``(3, 3)`` fractional -> Cartesian matrix of the cell (its columns are
            the cell vectors).
        operations: the space group's ``(4, 4)`` (or ``(3, 4)``) Seitz matrices in fractional
            coordinates; lattice translations are added here, as many as ``radius_A`` needs.
        radius_A: how far around the file's atoms mates are kept.
    """
    from scipy.spatial import cKDTree

    if not radius_A > 0:
        raise ValueError(f"radius_A must be positive, not {radius_A!r}")
    orth = np.asarray(orthogonalization, dtype=np.float64)
    frac_of = np.linalg.inv(orth)
    coords = atoms.coords.astype(np.float64)
    frac = coords @ frac_of.T
    center = frac.mean(axis=0)
    # Lattice translations needed per axis: the file's extent plus the radius, in cell lengths.
    reach = np.ceil(np.ptp(frac, axis=0) + radius_A * np.linalg.norm(frac_of, axis=1)).astype(int) + 1
    tree = cKDTree(coords)
    copies = [atoms]
    for seitz in operations:
        seitz = np.asarray(seitz, dtype=np.float64)
        rot, tran = seitz[:3, :3], seitz[:3, 3]
        image = frac @ rot.T + tran
        base = np.round(center - (center @ rot.T + tran))
        identity = np.allclose(rot, np.eye(3)) and np.allclose(tran % 1.0, 0.0)
        for shift in itertools.product(*(range(-r, r + 1) for r in reach)):
            offset = base + np.array(shift)
            if identity and np.allclose(tran + offset, 0.0):
                continue  # the file's own atoms
            cart = (image + offset) @ orth.T
            distance, _ = tree.query(cart, distance_upper_bound=radius_A)
            keep = (distance <= radius_A) & (distance > _SAME_ATOM_A)
            if not keep.any():
                continue
            columns = {k: v[keep] for k, v in atoms.columns().items()}
            columns["coords"] = cart[keep].astype(np.float32)
            columns["symmetry_copy"] = np.full(int(keep.sum()), len(copies), dtype=np.int16)
            copies.append(AtomTable(**columns, name=atoms.name))
    return AtomTable.concatenate(copies, name=atoms.name)
