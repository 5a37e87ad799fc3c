"""Structure files -> columnar atom tables (:class:`AtomTable`), read through gemmi (BinaryCIF
through biotite); elements of MD-style PDB files inferred (:mod:`.elements`)."""

from .atoms import ENTITY_TYPES, AtomTable
from .blocklist import NON_LOI_RESIDUES, is_non_loi
from .elements import WATER_RESIDUES, infer_element, is_element, is_virtual_site, is_water_residue
from .io import (
    ALTLOC_MODES,
    STRUCTURE_SUFFIXES,
    AltlocMode,
    StructureError,
    StructureWarning,
    is_structure_file,
    load,
    read_bytes,
    select_altlocs,
    structure_name,
)

__all__ = [
    "ALTLOC_MODES",
    "ENTITY_TYPES",
    "NON_LOI_RESIDUES",
    "STRUCTURE_SUFFIXES",
    "WATER_RESIDUES",
    "AltlocMode",
    "AtomTable",
    "StructureError",
    "StructureWarning",
    "infer_element",
    "is_element",
    "is_non_loi",
    "is_structure_file",
    "is_virtual_site",
    "is_water_residue",
    "load",
    "read_bytes",
    "select_altlocs",
    "structure_name",
]
