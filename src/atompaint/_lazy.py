"""Lazy re-exports for package ``__init__`` modules: a name is imported from its submodule on first
access, so touching a light submodule (``atompaint.tasks.neighbor_loc.geometry``) does not import
Lightning (see the ``__init__`` rule in :mod:`atompaint`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving ``name`` from ``package.<exports[name]>``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
