"""The data-aware study's README tables are what ``experiments/approx/tables.py data`` prints from its
records, and the records are consistent with what the objective guarantees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parents[2] / "experiments" / "approx"
RECORDS = sorted(STUDY.glob("data_*.json"))


def test_generated_data_block_is_current(tables) -> None:
    readme = (STUDY / "README.md").read_text()
    rendered = tables.render("data")
    start, end = readme.index(tables.DATA_BEGIN), readme.index(tables.DATA_END) + len(tables.DATA_END)
    block = rendered[rendered.index(tables.DATA_BEGIN):rendered.index(tables.DATA_END) + len(tables.DATA_END)]
    assert readme[start:end] == block, "rerun `python experiments/approx/tables.py data` into the README"


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_records_respect_the_optimum(path: Path) -> None:
    data = json.loads(path.read_text())
    assert data["runs"], f"{path.name} holds no runs"
    for rank, b in data["baselines"].items():
        # [W S]_r S^+ is the data-error optimum among rank-r matrices; the plain SVD the Frobenius one.
        assert b["data_svd"]["data_error"] <= b["svd"]["data_error"] + 1e-9, rank
        assert b["svd"]["frobenius_error"] <= b["data_svd"]["frobenius_error"] + 1e-9, rank
    m, n = data["layer_shape"]
    for r in data["runs"]:
        dimension = data["dimensions"][r["label"]]
        assert dimension <= r["params"] and r["dimension_rank"] <= r["svd_rank"], r["label"]
        if r["family"] == "lowrank":
            rank = int(r["label"].split("r=")[1])
            assert dimension == rank * (m + n - rank), "a rank-r factorisation's dimension is r (m + n - r)"
            # a rank-r family cannot beat the data-aware SVD at rank >= r
            assert r["data"]["data_error"] >= data["baselines"][str(r["svd_rank"])]["data_svd"]["data_error"] - 1e-6
        first = next(f for f in data["runs"] if f["label"] == r["label"])
        assert ("frobenius" in r) == (r is first), "the Frobenius fit runs from each configuration's first start"
        for fit in (r[k] for k in ("frobenius", "data") if k in r):
            assert 0 <= fit["accuracy"] <= 1 and fit["steps"] <= data["steps_cap"]
            assert isinstance(fit["converged"], bool) and fit["grad_norm"] >= 0
