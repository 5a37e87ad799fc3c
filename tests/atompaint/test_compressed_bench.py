"""The compressed-encoder benchmark (experiments/compressed_encoders/bench.py) on its quick shape: the
machine and load are recorded, ratios are paired per round, the noise rule marks runs and the
tables refuse noisy or undescribed runs."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from atompaint.training.config import load_config

EXPERIMENT = Path(__file__).parents[2] / "experiments" / "compressed_encoders"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"compressed_encoders_{name}", EXPERIMENT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("bench")
tables = _load("tables")


@pytest.fixture(scope="module")
def quick_result():
    config = EXPERIMENT.parents[1] / "experiments" / "neighbor_loc" / "seed004_gamma_log16.yaml"
    args = argparse.Namespace(config=str(config), quick=True,
                              variants=["irrep-wise + dense mixing + CG"], batch=1, memory_batch=1, repeats=2,
                              map_large=False, command="test")
    return bench.run(args)


def test_quick_bench_records_machine_paired_ratios_and_noise(quick_result):
    r = quick_result
    assert list(r["variants"]) == ["dense", "dense + CG", "irrep-wise + dense mixing + CG"]
    assert r["machine"]["cpu"] and r["machine"]["torch_threads"] >= 1 and "hostname" not in r["machine"]
    assert r["machine"]["cg_tensor_product"] in ("fused kernel", "plain PyTorch")
    assert len(r["load_average"]["before"]) == 3 and len(r["load_average"]["during"]) == 2
    row = r["variants"]["irrep-wise + dense mixing + CG"]
    dense = r["variants"]["dense"]["step_seconds"]
    expected = sorted(a / b for a, b in zip(dense, row["step_seconds"]))
    assert sorted(row["speedup"]["dense"]["values"]) == pytest.approx(expected)
    assert row["speedup"]["dense"]["min"] == pytest.approx(expected[0])
    assert row["flops_ratio"]["dense"] > 1  # the irrep-wise encoder counts fewer FLOPs than dense
    assert row["test_time_forms"]["export_max_rel_error"] < 1e-5
    assert r["noisy"] and any("2 paired steps" in reason for reason in r["noise_reasons"])
    with pytest.raises(tables.NotRecordable, match="2 paired steps"):
        tables.tables(r)
    text = tables.tables(r, allow_noisy=True)
    assert text.startswith("**NOISY RUN") and "| irrep-wise + dense mixing + CG |" in text


def test_noise_rule_passes_a_quiet_tight_run_and_flags_load_and_spread(quick_result):
    r = copy.deepcopy(quick_result)
    r["repeats"] = 5
    threads = r["machine"]["torch_threads"]
    r["load_average"] = {"before": [threads, 0, 0], "timed_start": [threads, 0, 0],
                         "during": [[threads + 0.2, 0, 0]], "after": [threads + 0.4, 0, 0]}
    for row in r["variants"].values():
        for ratio in row["speedup"].values():
            ratio["iqr_over_median"] = 0.05
    assert bench.noise_reasons(r) == []
    r["load_average"]["after"] = [threads + 0.6, 0, 0]
    r["variants"]["dense + CG"]["speedup"]["dense"]["iqr_over_median"] = 0.2
    reasons = bench.noise_reasons(r)
    assert any(reason.startswith("1-minute load after") for reason in reasons)
    assert any(reason.startswith("dense + CG vs dense") for reason in reasons)
    del r["machine"]
    assert "unrecorded machine state" in tables.check(r)[0]


def test_matched_grid_variant_is_the_recorded_width_scan_choice():
    """bench.py's "grid (matched params) + dense mixing" is the width results/grid_widths.json chose
    (closest to its target in parameters and in FLOPs), and counting it today gives the recorded row."""
    widths = _load("grid_widths")
    recorded = json.loads((EXPERIMENT / "results" / "grid_widths.json").read_text())
    changes = bench.VARIANTS["grid (matched params) + dense mixing"]
    assert changes["width"] == recorded["closest_params"] == recorded["closest_flops"]
    row = next(r for r in recorded["grid"] if r["width"] == changes["width"])
    assert row["max_channels"] == changes["max_channels"]
    config = replace(load_config(EXPERIMENT.parents[1] / recorded["config"]).encoder, **changes)
    assert widths.describe(config) == {k: row[k] for k in ("params", "flops_per_example", "flops_by_type")}
    assert abs(row["params"] / recorded["target"]["params"] - 1) < 0.01
