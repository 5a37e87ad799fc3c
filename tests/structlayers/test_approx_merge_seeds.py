"""``experiments/approx/merge_seeds.py``: a study run in shards of seeds merges into the record the
unsharded command writes (the same fits, up to the measured seconds)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from structlayers.cli import main
from structlayers.lab.approx.experiment import ApproxResult

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "approx" / "merge_seeds.py"
STUDY = ["approx", "--no-progress", "--no-timing", "--layer", "lowrank,acdc", "--n", "8", "--params-budget", "16,32",
         "--shuffle", "random", "--steps", "40"]


def _record(tmp_path: Path, name: str, *seeds: str) -> Path:
    path = tmp_path / f"{name}.json"
    assert main([*STUDY, "--seeds", *seeds, "--json", str(path)]) == 0
    return path


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_shards_merge_into_the_unsharded_record(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("merge_seeds", SCRIPT)
    merge_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge_seeds)
    full = json.loads(_record(tmp_path, "full", "4").read_text())
    shards = [ApproxResult.from_json(_record(tmp_path, n, *s).read_text()) for n, s in (("b", "23"), ("a", "01"))]
    merged = json.loads(merge_seeds.merge(shards).to_json())
    assert merged["config"] == full["config"] and merged["target"] == full["target"]
    for key in ("runs", "rows"):
        assert len(merged[key]) == len(full[key])
        for got, want in zip(merged[key], full[key], strict=True):
            assert all(_same(got[k], want[k]) for k in want if k != "seconds"), (key, got, want)
    with pytest.raises(ValueError, match="two shards"):
        merge_seeds.merge([shards[1], shards[1]])
