"""Fixtures shared by the structlayers tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

APPROX_STUDY = Path(__file__).resolve().parents[2] / "experiments" / "approx"


@pytest.fixture(scope="session")
def tables() -> ModuleType:
    """``experiments/approx/tables.py``, the study's table generator, loaded as a module."""
    spec = importlib.util.spec_from_file_location("approx_tables", APPROX_STUDY / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
