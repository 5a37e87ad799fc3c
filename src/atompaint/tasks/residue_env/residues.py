"""The residues of a structure as examples of the amino-acid environment task: which residues count,
what their label is, where their image is centred and which atoms are theirs.

Rules (each one counted in :class:`ResidueCounts`, none raises on a structure):

- **Label**: the residue name among the 20 standard amino acids (:data:`AMINO_ACIDS`, alphabetical;
  the class index is the position).  A modified residue whose parent is unambiguous is relabelled
  with it (:data:`MODIFIED_PARENTS`: MSE -> MET, SEP -> SER, TPO -> THR, PTR -> TYR, MLY -> LYS,
  HYP -> PRO, ...) with ``nonstandard="map"`` (the default), or skipped with ``"exclude"``.  Any
  other residue (ligands, nucleotides, UNK, ambiguous modifications such as PCA) is never an
  example, but its atoms stay in the images of the others.
- **Own atoms**: every atom of the residue -- side chain, modification and backbone N, CA, C, O
  alike -- is left out of its own image, as Torng & Altman (2017) do.  Keeping the backbone would
  show glycine by the missing CB and fix the side chain's direction in the image.
- **Centre**: ``center="cb"`` (the default) uses the CB atom, CA for glycine.  A non-glycine residue
  without CB gets the CB of ideal geometry placed from its N, CA and C (:func:`ideal_cb`).
  ``"ideal-cb"`` places that ideal CB for every residue, glycine included, so the centre carries no
  trace of the residue type; ``"ca"`` centres every residue on CA.  A residue missing the backbone
  atoms its centre needs (CA for ``"ca"`` and glycine; N, CA and C when a CB must be placed) is
  skipped.
- **Empty environment**: a residue with no other atom near it is kept -- an all-zero image is a
  valid, if uninformative, example; such residues are counted (``isolated``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from atompaint.structures import AtomTable

#: The 20 standard amino acids; a label is the index of the residue's (parent's) name here.
AMINO_ACIDS: tuple[str, ...] = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)

#: Modified amino acids with an unambiguous standard parent (wwPDB chemical component dictionary,
#: ``_chem_comp.mon_nstd_parent_comp_id``): the most frequent modifications in the PDB.
MODIFIED_PARENTS: dict[str, str] = {
    "MSE": "MET", "FME": "MET", "CXM": "MET",
    "SEP": "SER",
    "TPO": "THR",
    "PTR": "TYR", "TYS": "TYR",
    "MLY": "LYS", "MLZ": "LYS", "M3L": "LYS", "ALY": "LYS", "KCX": "LYS", "LLP": "LYS",
    "HYP": "PRO",
    "CSO": "CYS", "CSD": "CYS", "CME": "CYS", "OCS": "CYS", "CAS": "CYS", "CSX": "CYS", "SMC": "CYS",
    "HIC": "HIS", "NEP": "HIS",
    "CGU": "GLU",
    "MEN": "ASN",
    "AGM": "ARG",
}

#: How a residue's image is centred (see the module docstring).
CenterMode = Literal["cb", "ideal-cb", "ca"]
CENTER_MODES: tuple[str, ...] = ("cb", "ideal-cb", "ca")
#: What happens to modified residues (see the module docstring).
NonstandardMode = Literal["map", "exclude"]
NONSTANDARD_MODES: tuple[str, ...] = ("map", "exclude")

_LABELS = {name: i for i, name in enumerate(AMINO_ACIDS)}
GLYCINE = _LABELS["GLY"]


def residue_label(name: str, nonstandard: NonstandardMode = "map") -> int | None:
    """The class of residue ``name``, or ``None`` when it is not an example."""
    if name in _LABELS:
        return _LABELS[name]
    if nonstandard == "map" and name in MODIFIED_PARENTS:
        return _LABELS[MODIFIED_PARENTS[name]]
    return None


def ideal_cb(n: np.ndarray, ca: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The CB position of ideal tetrahedral geometry from backbone N, CA and C, ``(..., 3)`` each.

    The constants place CB 1.52 A from CA (Engh & Huber geometry), as trRosetta and ProteinMPNN do.
    """
    b = ca - n
    c_ = c - ca
    a = np.cross(b, c_)
    return -0.58273431 * a + 0.56802827 * b - 0.54067466 * c_ + ca


@dataclass
class ResidueCounts:
    """What happened to the residues of one or more structures."""

    #: Residues that became examples.
    examples: int = 0
    #: Examples relabelled from a modified residue to its parent.
    mapped: int = 0
    #: Modified residues left out (``nonstandard="exclude"``).
    excluded_modified: int = 0
    #: Examples whose CB was placed from the backbone (no CB atom in the file).
    placed_cb: int = 0
    #: Amino acids skipped for lack of the backbone atoms their centre needs.
    missing_backbone: int = 0
    #: Examples with no other atom within reach of any orientation of their image (all-zero image).
    isolated: int = 0

    def __add__(self, other: ResidueCounts) -> ResidueCounts:
        return ResidueCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class StructureResidues:
    """The examples of one structure.

    ``atom_residue`` maps every atom of the table to the ordinal of its residue (in file order);
    ``residue`` is that ordinal for each example, ``label`` its class and ``center`` its image
    centre ``(n, 3)``; ``names`` are ``chain:number[insertion] NAME`` for reports.
    """

    atom_residue: np.ndarray
    residue: np.ndarray
    label: np.ndarray
    center: np.ndarray
    names: tuple[str, ...]
    counts: ResidueCounts


def residue_ordinals(atoms: AtomTable) -> np.ndarray:
    """The residue of each atom as an ordinal ``0..R-1``: residues are (chain, number, insertion
    code), numbered by their first atom's position in the table."""
    keys = np.char.add(np.char.add(atoms.chain, "\x00"),
                       np.char.add(atoms.residue_id.astype(str), np.char.add("\x00", atoms.insertion_code)))
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()]


def find_residues(
    atoms: AtomTable,
    *,
    center: CenterMode = "cb",
    nonstandard: NonstandardMode = "map",
    reach_A: float | None = None,
) -> StructureResidues:
    """The examples of ``atoms`` by the rules of the module docstring.

    ``reach_A``: the distance within which another atom can touch the image in some orientation;
    residues with no other atom that close are counted ``isolated`` (``None``: not counted).
    """
    if center not in CENTER_MODES:
        raise ValueError(f"unknown center {center!r}; choose from {', '.join(CENTER_MODES)}")
    if nonstandard not in NONSTANDARD_MODES:
        raise ValueError(f"unknown nonstandard {nonstandard!r}; choose from {', '.join(NONSTANDARD_MODES)}")
    ordinal = residue_ordinals(atoms)
    n_res = int(ordinal.max()) + 1 if len(ordinal) else 0
    first = np.full(n_res, len(atoms), dtype=np.int64)
    np.minimum.at(first, ordinal, np.arange(len(atoms)))
    backbone = {}
    for atom in ("N", "CA", "C", "CB"):
        pos = np.full((n_res, 3), np.nan)
        rows = np.flatnonzero(atoms.atom_name == atom)[::-1]  # the first atom of a residue wins
        pos[ordinal[rows]] = atoms.coords[rows]
        backbone[atom] = pos
    counts = ResidueCounts()
    residues, labels, centers, names = [], [], [], []
    for r in range(n_res):
        name = str(atoms.residue_name[first[r]])
        label = residue_label(name, nonstandard)
        if label is None:
            counts.excluded_modified += name in MODIFIED_PARENTS
            continue
        has = {k: bool(np.isfinite(v[r]).all()) for k, v in backbone.items()}
        placed = center == "ideal-cb" or (center == "cb" and label != GLYCINE and not has["CB"])
        if center == "ca" or (center == "cb" and label == GLYCINE):
            needed = ("CA",)
        elif placed:
            needed = ("N", "CA", "C")
        else:
            needed = ("CB",)
        if not all(has[k] for k in needed):
            counts.missing_backbone += 1
            continue
        if placed:
            point = ideal_cb(backbone["N"][r], backbone["CA"][r], backbone["C"][r])
            counts.placed_cb += center == "cb"
        else:
            point = backbone[needed[0]][r]
        counts.mapped += name not in _LABELS
        residues.append(r)
        labels.append(label)
        centers.append(point)
        i = first[r]
        names.append(f"{atoms.chain[i]}:{atoms.residue_id[i]}{atoms.insertion_code[i]} {name}")
    counts.examples = len(residues)
    residue = np.asarray(residues, dtype=np.int64)
    center_xyz = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    if reach_A is not None and len(residue):
        counts.isolated = int((~_has_neighbor(atoms.coords, ordinal, residue, center_xyz, reach_A)).sum())
    return StructureResidues(ordinal, residue, np.asarray(labels, dtype=np.int64), center_xyz, tuple(names), counts)


def _has_neighbor(coords: np.ndarray, ordinal: np.ndarray, residue: np.ndarray, centers: np.ndarray,
                  reach_A: float) -> np.ndarray:
    """Whether an atom of another residue lies within ``reach_A`` of each centre: among the nearest
    atoms (more than any residue has), one of another residue within reach."""
    from scipy.spatial import cKDTree

    k = min(len(coords), _NEAREST)
    _, hits = cKDTree(coords).query(centers, k=k, distance_upper_bound=reach_A)
    hits = np.asarray(hits).reshape(len(centers), k)
    found = hits < len(coords)
    other = ordinal[np.where(found, hits, 0)] != residue[:, None]
    return np.any(found & other, axis=1)


#: More atoms than any residue has (tryptophan has 14 heavy atoms, 24 with hydrogens).
_NEAREST = 64
