"""Reading structure files (mmCIF, PDB, optionally gzipped; binary CIF where gemmi supports it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from .atoms import AtomTable

#: File name endings recognised as structures (``.gz`` allowed after each).
STRUCTURE_SUFFIXES = (".cif", ".mmcif", ".pdb", ".ent", ".bcif")

_ENTITY_NAMES = {
    "Polymer": "polymer",
    "NonPolymer": "non-polymer",
    "Branched": "branched",
    "Water": "water",
    "Unknown": "unknown",
}


class StructureError(ValueError):
    """A structure file that cannot be read or holds no usable atoms; the message names the file."""


def structure_name(path: str | os.PathLike[str]) -> str:
    """The file name without structure/compression suffixes: ``1abcA.pdb.gz`` -> ``1abcA``."""
    name = Path(path).name
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in STRUCTURE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_structure_file(path: str | os.PathLike[str]) -> bool:
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(STRUCTURE_SUFFIXES)


def load(
    path: str | os.PathLike[str],
    *,
    drop_hydrogens: bool = False,
    drop_waters: bool = False,
    altloc: Literal["all", "first"] = "all",
    model: int | None = 0,
) -> AtomTable:
    """Read a structure file into an :class:`AtomTable`.

    Args:
        path: mmCIF/PDB file, plain or gzipped (binary CIF if the installed gemmi reads it).
        drop_hydrogens: remove H and D atoms.
        drop_waters: remove water residues.
        altloc: ``"all"`` keeps every alternate location; ``"first"`` keeps only the first conformer
            of each atom (the usual choice for images: no doubled atoms).
        model: index of the model to keep (NMR ensembles hold many); ``None`` keeps all models.

    Raises:
        FileNotFoundError: the file does not exist.
        StructureError: the file is malformed, in an unknown format, or holds no atoms (after the
            requested filtering).
    """
    import gemmi

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file not found: {path}")
    if not is_structure_file(path):
        raise StructureError(
            f"{path}: unrecognised structure format (expected one of "
            f"{', '.join(STRUCTURE_SUFFIXES)}, optionally .gz)"
        )
    if altloc not in ("all", "first"):
        raise ValueError(f"altloc must be 'all' or 'first', not {altloc!r}")
    try:
        structure = gemmi.read_structure(str(path), merge_chain_parts=True)
    except (RuntimeError, ValueError, OSError) as err:
        hint = ""
        if ".bcif" in path.name.lower():
            hint = f" (binary CIF is not readable by gemmi {gemmi.__version__}; convert it to mmCIF)"
        raise StructureError(f"{path}: cannot parse structure: {err}{hint}") from err
    if len(structure) == 0:
        raise StructureError(f"{path}: no models (empty or not a coordinate file)")

    structure.setup_entities()
    if drop_hydrogens:
        structure.remove_hydrogens()
    if drop_waters:
        structure.remove_waters()
    if altloc == "first":
        structure.remove_alternative_conformations()

    if model is not None:
        if not -len(structure) <= model < len(structure):
            raise StructureError(f"{path}: has {len(structure)} model(s), cannot select model {model}")
        models = [structure[model]]
    else:
        models = list(structure)

    table = _table_from_models(models, structure_name(path))
    if len(table) == 0:
        raise StructureError(f"{path}: no atoms" + (" after filtering" if drop_hydrogens or drop_waters else ""))
    if not np.isfinite(table.coords).all():
        raise StructureError(f"{path}: non-finite atom coordinates")
    return table


def _table_from_models(models: list, name: str) -> AtomTable:
    coords: list[tuple[float, float, float]] = []
    element: list[str] = []
    atom_name: list[str] = []
    occupancy: list[float] = []
    b_factor: list[float] = []
    residue_name: list[str] = []
    residue_id: list[int] = []
    icode: list[str] = []
    chain_name: list[str] = []
    entity: list[str] = []
    hetero: list[bool] = []
    altloc: list[str] = []
    model_num: list[int] = []

    for mdl in models:
        mnum = int(mdl.num) if str(mdl.num).lstrip("-").isdigit() else 1
        for chain in mdl:
            for res in chain:
                ent = "water" if res.is_water() else _ENTITY_NAMES.get(res.entity_type.name, "unknown")
                rname, rnum, ric, het = res.name, res.seqid.num, res.seqid.icode.strip(), res.het_flag == "H"
                for atom in res:
                    p = atom.pos
                    coords.append((p.x, p.y, p.z))
                    element.append(atom.element.name.upper())
                    atom_name.append(atom.name)
                    occupancy.append(atom.occ)
                    b_factor.append(atom.b_iso)
                    residue_name.append(rname)
                    residue_id.append(rnum)
                    icode.append(ric)
                    chain_name.append(chain.name)
                    entity.append(ent)
                    hetero.append(het)
                    altloc.append(atom.altloc.strip("\x00 "))
                    model_num.append(mnum)

    n = len(coords)
    return AtomTable(
        coords=np.asarray(coords, dtype=np.float32).reshape(n, 3),
        element=np.asarray(element, dtype="<U2"),
        atom_name=np.asarray(atom_name, dtype="<U4"),
        occupancy=np.asarray(occupancy, dtype=np.float32),
        b_factor=np.asarray(b_factor, dtype=np.float32),
        residue_name=np.asarray(residue_name, dtype="<U5"),
        residue_id=np.asarray(residue_id, dtype=np.int32),
        insertion_code=np.asarray(icode, dtype="<U1"),
        chain=np.asarray(chain_name, dtype="<U4"),
        entity_type=np.asarray(entity, dtype="<U11"),
        is_hetero=np.asarray(hetero, dtype=bool),
        altloc=np.asarray(altloc, dtype="<U1"),
        model=np.asarray(model_num, dtype=np.int16),
        name=name,
    )
