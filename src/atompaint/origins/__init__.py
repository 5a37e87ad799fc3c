"""Origins (candidate view centres) of each structure, stored in an on-disk SQLite index."""

from .index import (
    LOAD_OPTIONS,
    BuildReport,
    OriginIndex,
    OriginSampler,
    StructureInfo,
    build_index,
    find_structures,
)
from .select import AtomDensity, OriginParams, select_origins

__all__ = [
    "AtomDensity",
    "LOAD_OPTIONS",
    "BuildReport",
    "OriginIndex",
    "OriginParams",
    "OriginSampler",
    "StructureInfo",
    "build_index",
    "find_structures",
    "select_origins",
]
