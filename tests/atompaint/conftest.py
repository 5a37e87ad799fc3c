"""Fixtures shared by the atompaint tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from atompaint.origins import build_index, find_structures

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An origin index (default criterion) of three real chains of the test data."""
    d = tmp_path_factory.mktemp("structures")
    for name in ["2xdgA", "2xcjA", "2cviA"]:
        shutil.copy(DATA / f"{name}.pdb.gz", d)
    db = d / "origins.db"
    build_index(find_structures(d), db)
    return db
