"""Reading structure files: mmCIF, PDB (crystallographic or written by MD programs) and BinaryCIF,
plain or gzipped.

Every failure to read a file -- a missing file aside -- is a :class:`StructureError` naming it,
whatever the parser raised.  A gzipped file is decompressed in full before parsing, which checks its
CRC and length: a truncated or corrupt ``.gz`` is an error, never a partial structure.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from .atoms import AtomTable
from .elements import fill_pdb_elements, is_virtual_site, is_water_residue
from .symmetry import CONTEXTS, add_symmetry_mates

#: File name endings recognised as structures (``.gz`` allowed after each).
STRUCTURE_SUFFIXES = (".cif", ".mmcif", ".pdb", ".ent", ".bcif")

#: How alternate locations are kept (see :func:`load`).
AltlocMode = Literal["all", "first", "highest"]
ALTLOC_MODES = ("all", "first", "highest")

_ENTITY_NAMES = {
    "Polymer": "polymer",
    "NonPolymer": "non-polymer",
    "Branched": "branched",
    "Water": "water",
    "Unknown": "unknown",
}


class StructureError(ValueError):
    """A structure file that cannot be read or holds no usable atoms; the message names the file."""


class StructureWarning(UserWarning):
    """A structure was read, but the loader had to guess (elements inferred, virtual sites dropped)."""


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
    return _format(Path(path)) is not None


def _format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, fmt in ((".cif", "mmcif"), (".mmcif", "mmcif"), (".pdb", "pdb"), (".ent", "pdb"), (".bcif", "bcif")):
        if name.endswith(suffix):
            return fmt
    return None


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The content of ``path``, decompressed in full and integrity-checked if it ends in ``.gz``."""
    path = Path(path)
    raw = path.read_bytes()
    if not path.name.lower().endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise StructureError(f"{path}: corrupt or truncated gzip file ({err})") from None


def load(
    path: str | os.PathLike[str],
    *,
    drop_hydrogens: bool = False,
    drop_waters: bool = False,
    altloc: AltlocMode = "all",
    model: int | None = 0,
    context: str = "file",
    context_radius_A: float = 40.0,
) -> AtomTable:
    """Read a structure file into an :class:`AtomTable`.

    PDB files without an element column (as MD programs write them) get their elements inferred
    from atom and residue names (:mod:`atompaint.structures.elements`), their virtual sites (TIP4P's
    ``MW``, lone pairs) dropped and the water residues of MD water models (SOL, TIP3, WAT, ...)
    recognised as water; a :class:`StructureWarning` says what was inferred, and atoms no rule
    explains are an error.

    Args:
        path: mmCIF/PDB/BinaryCIF file, plain or gzipped (BinaryCIF needs biotite).
        drop_hydrogens: remove H and D atoms.
        drop_waters: remove water residues.
        altloc: ``"all"`` keeps every alternate location with its occupancy (the conformers are
            weighted as the model says); ``"first"`` keeps, per residue, the first conformer, and
            ``"highest"`` the conformer of highest mean occupancy.  Both give each kept atom the summed
            occupancy of its alternatives (capped at 1), so an atom split 0.6/0.4 is imaged at full
            density, while a partially occupied atom without alternatives keeps its occupancy.
        model: index of the model to keep (NMR ensembles hold many); ``None`` keeps all models.
        context: ``"file"``: the atoms as the file gives them; ``"crystal"``: followed by the crystal
            symmetry mates within ``context_radius_A`` of them (from the cell and space group:
            CRYST1, or mmCIF ``_cell`` and ``_symmetry``; ``AtomTable.symmetry_copy`` numbers the
            copies); ``"assembly"``: the first biological assembly of the file (mmCIF
            ``_pdbx_struct_assembly_gen``, or PDB REMARK 350), built by gemmi, in place of the file's
            atoms.  A file without the information is a :class:`StructureError`, never silently
            the bare file.

    Raises:
        FileNotFoundError: the file does not exist.
        StructureError: the file is malformed, truncated, in an unknown format, holds no atoms (after
            the requested filtering), holds atoms whose element cannot be told, or lacks what
            ``context`` needs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file not found: {path}")
    fmt = _format(path)
    if fmt is None:
        raise StructureError(
            f"{path}: unrecognised structure format (expected one of "
            f"{', '.join(STRUCTURE_SUFFIXES)}, optionally .gz)"
        )
    if altloc not in ALTLOC_MODES:
        raise ValueError(f"altloc must be one of {', '.join(map(repr, ALTLOC_MODES))}, not {altloc!r}")
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {', '.join(map(repr, CONTEXTS))}, not {context!r}")
    try:
        structure = _read_structure(path, fmt)
    except (StructureError, MemoryError):
        raise
    except Exception as err:  # gemmi raises RuntimeError, ValueError, IndexError, ... on bad input
        raise StructureError(f"{path}: cannot parse structure: {type(err).__name__}: {err}") from err
    if len(structure) == 0:
        raise StructureError(f"{path}: no models (empty or not a coordinate file)")
    structure.setup_entities()

    if model is not None:
        if not -len(structure) <= model < len(structure):
            raise StructureError(f"{path}: has {len(structure)} model(s), cannot select model {model}")
        models = [structure[model]]
    else:
        models = list(structure)
    if context == "assembly":
        models = [_assembly(structure, models[0], path)]

    table = _table_from_models(models, structure_name(path))
    unknown = np.flatnonzero(table.element == "X")
    virtual = unknown[[is_virtual_site(name) for name in table.atom_name[unknown].tolist()]]
    if len(virtual):
        table = table.select(np.setdiff1d(np.arange(len(table)), virtual))
    table = select_altlocs(table, altloc)
    keep = np.ones(len(table), dtype=bool)
    if drop_hydrogens:
        keep &= ~table.is_hydrogen
    if drop_waters:
        keep &= ~table.is_water
    if not keep.all():
        table = table.select(keep)
    if len(table) == 0:
        raise StructureError(f"{path}: no atoms" + (" after filtering" if drop_hydrogens or drop_waters else ""))
    if not np.isfinite(table.coords).all():
        raise StructureError(f"{path}: non-finite atom coordinates")
    if context == "crystal":
        if not structure.cell.is_crystal() or structure.find_spacegroup() is None:
            raise StructureError(
                f"{path}: no crystal cell and space group (CRYST1, or mmCIF _cell and _symmetry), so no "
                "symmetry mates; use context 'file', or 'assembly' for an mmCIF with assemblies"
            )
        operations = [op.float_seitz() for op in structure.find_spacegroup().operations()]
        table = add_symmetry_mates(table, np.array(structure.cell.orth.mat.tolist()), operations, context_radius_A)
    return table


def _assembly(structure, model, path: Path):  # -> gemmi.Model
    """The first biological assembly of ``structure`` built from ``model``."""
    import gemmi

    if len(structure.assemblies) == 0:
        raise StructureError(
            f"{path}: no biological assembly (mmCIF _pdbx_struct_assembly_gen or PDB REMARK 350); "
            "use context 'file', or 'crystal' for a file with a cell"
        )
    try:
        return gemmi.make_assembly(structure.assemblies[0], model, gemmi.HowToNameCopiedChain.AddNumber)
    except Exception as err:  # gemmi raises RuntimeError on operators it cannot apply
        raise StructureError(f"{path}: cannot build assembly {structure.assemblies[0].name}: {err}") from err


def _read_structure(path: Path, fmt: str):  # -> gemmi.Structure
    import gemmi

    data = read_bytes(path)
    if not data.strip():
        raise StructureError(f"{path}: empty file (no atoms)")
    if fmt == "bcif":
        return gemmi.read_structure_string(_bcif_to_cif(data, path), format=gemmi.CoorFormat.Mmcif)
    if fmt == "mmcif":
        return gemmi.read_structure_string(data, format=gemmi.CoorFormat.Mmcif)
    text, report = fill_pdb_elements(data.decode("latin-1"))
    if report.unknown:
        shown = ", ".join(f"{a!r} in {r}" for a, r in dict.fromkeys(report.unknown))
        raise StructureError(
            f"{path}: cannot tell the element of {len(report.unknown)} atom(s) without an element column "
            f"(columns 77-78): {shown[:300]}; add the element column"
        )
    if report.guessed:
        warnings.warn(f"{path}: {report.describe()}", StructureWarning, stacklevel=3)
    return gemmi.read_structure_string(text, format=gemmi.CoorFormat.Pdb)


def _bcif_to_cif(data: bytes, path: Path) -> str:
    """BinaryCIF -> mmCIF text (every category, column by column) through biotite."""
    try:
        import biotite.structure.io.pdbx as pdbx
    except ImportError:
        raise StructureError(
            f"{path}: reading BinaryCIF needs the biotite package (pip install biotite; it is part of the "
            "atompaint extra), or convert the file to mmCIF"
        ) from None
    import io

    binary = pdbx.BinaryCIFFile.read(io.BytesIO(data))
    text = pdbx.CIFFile()
    for block_name, block in binary.items():
        out = pdbx.CIFBlock()
        for category_name, category in block.items():
            out[category_name] = pdbx.CIFCategory(
                {
                    name: pdbx.CIFColumn(
                        pdbx.CIFData(column.as_array(str)),
                        None if column.mask is None else pdbx.CIFData(column.mask.array),
                    )
                    for name, column in category.items()
                }
            )
        text[block_name] = out
    buffer = io.StringIO()
    text.write(buffer)
    return buffer.getvalue()


def select_altlocs(table: AtomTable, mode: AltlocMode) -> AtomTable:
    """One conformer per residue (``"first"`` or ``"highest"``), with each kept atom's occupancy the
    sum over its alternatives (at most 1); ``"all"`` returns ``table`` unchanged.  See :func:`load`."""
    if mode not in ALTLOC_MODES:
        raise ValueError(f"altloc must be one of {', '.join(map(repr, ALTLOC_MODES))}, not {mode!r}")
    rows = np.flatnonzero(table.altloc != "")
    if mode == "all" or len(rows) == 0:
        return table
    residue_of = {}
    letters: dict[tuple, dict[str, list[float]]] = {}
    site_total: dict[tuple, float] = {}
    for i in rows.tolist():
        res = (int(table.model[i]), str(table.chain[i]), int(table.residue_id[i]), str(table.insertion_code[i]))
        residue_of[i] = res
        letters.setdefault(res, {}).setdefault(str(table.altloc[i]), []).append(float(table.occupancy[i]))
        site = (*res, str(table.atom_name[i]))
        site_total[site] = site_total.get(site, 0.0) + float(table.occupancy[i])
    if mode == "first":
        chosen = {res: next(iter(by_letter)) for res, by_letter in letters.items()}
    else:  # highest mean occupancy; ties keep the first letter met
        chosen = {res: max(by_letter, key=lambda k: np.mean(by_letter[k])) for res, by_letter in letters.items()}
    keep = np.ones(len(table), dtype=bool)
    occupancy = table.occupancy.copy()
    for i in rows.tolist():
        res = residue_of[i]
        if table.altloc[i] != chosen[res]:
            keep[i] = False
        else:
            occupancy[i] = min(1.0, site_total[(*res, str(table.atom_name[i]))])
    columns = table.columns()
    columns["occupancy"] = occupancy
    return AtomTable(**columns, name=table.name).select(keep)


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
                water = res.is_water() or is_water_residue(res.name)
                ent = "water" if water else _ENTITY_NAMES.get(res.entity_type.name, "unknown")
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
