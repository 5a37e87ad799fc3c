"""Structure files -> columnar atom tables (:class:`AtomTable`), read through gemmi."""

from .atoms import ENTITY_TYPES, AtomTable
from .io import STRUCTURE_SUFFIXES, StructureError, is_structure_file, load, structure_name

__all__ = [
    "ENTITY_TYPES",
    "STRUCTURE_SUFFIXES",
    "AtomTable",
    "StructureError",
    "is_structure_file",
    "load",
    "structure_name",
]
