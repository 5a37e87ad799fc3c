"""``experiments/approx/data_aware.py``'s record plumbing: ``--raise-cap`` (a record made at a lower
step cap goes on at a higher one, keeping exactly the runs a refit would reproduce) and ``--shard`` /
``--absorb`` (a study fitted in parts, taken back into one record)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import structlayers
from structlayers.lab.approx.data_aware import Whitening, fit_data
from structlayers.surgery.fit import FitOptions

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "approx" / "data_aware.py"


@pytest.fixture(scope="module")
def data_aware() -> ModuleType:
    spec = importlib.util.spec_from_file_location("data_aware", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _fit(converged: bool) -> dict[str, object]:
    return {"converged": converged, "steps": 10 if converged else 20, "data_error": 0.5}


def test_raise_cap_keeps_converged_runs_and_refits_the_rest(data_aware: ModuleType) -> None:
    runs = [{"label": "a", "start": "projection", "seed": 0, "frobenius": _fit(True), "data": _fit(True)},
            {"label": "a", "start": "random", "seed": 0, "data": _fit(False)},
            {"label": "b", "start": "projection", "seed": 0, "frobenius": _fit(False), "data": _fit(True)},
            {"label": "b", "start": "random", "seed": 0, "data": _fit(True)}]
    record = {"command": "python data_aware.py --target t --steps 20 --out x.json", "steps_cap": 20, "runs": runs,
              "dimensions": {"a": 7, "b": 8}, "complete": True}
    raised = data_aware.raise_cap(record, 60)
    assert [(r["label"], r["start"]) for r in raised["runs"]] == [("a", "projection"), ("b", "random")]
    assert raised["dimensions"] == {"a": 7}  # b's first start is refitted: its dimension is measured again
    assert raised["steps_cap"] == 60 and "--steps 60" in raised["command"] and not raised["complete"]
    assert raised["raised_from"] == {"steps_cap": 20, "kept": 2, "refitted": 2}
    assert record["steps_cap"] == 20 and len(record["runs"]) == 4  # the old record is left as it was


def test_a_fit_that_converged_under_a_cap_ends_the_same_under_a_higher_one() -> None:
    """Why ``--raise-cap`` may keep converged runs: L-BFGS is deterministic and stops on its own test."""
    torch.manual_seed(0)
    target = torch.randn(8, 8, dtype=torch.float64)
    whitening = Whitening.from_inputs(torch.randn(200, 8, dtype=torch.float64) * torch.linspace(0.2, 2, 8))
    results = []
    for steps in (400, 1200):
        torch.manual_seed(3)
        layer = structlayers.create("lowrank", 8, 8, rank=2, bias=False).double()
        fit = fit_data(layer, target, whitening, FitOptions(steps=steps))
        results.append((fit.converged, fit.steps, layer.to_dense()[0]))
    (converged, steps, weight), (converged_2, steps_2, weight_2) = results
    assert converged and converged_2 and steps == steps_2 < 400
    assert torch.equal(weight, weight_2)


def test_shards_absorb_into_one_record(data_aware: ModuleType) -> None:
    """``--shard K/N`` parts of a study go back into one record with ``--absorb``: every run once, the
    dimensions and baselines of both; a record of another study is refused."""
    assert data_aware.shard("1/2") == (1, 2)
    for bad in ("2/2", "a/2", "1"):
        with pytest.raises(argparse.ArgumentTypeError):
            data_aware.shard(bad)
    study = {"format": 2, "target": "t", "layer_shape": [4, 4], "checkpoint": "c", "steps_cap": 60, "families": "f"}
    a = {**study, "runs": [{"label": "a", "start": "random", "seed": 0}], "dimensions": {"a": 7},
         "baselines": {"2": 0.5}, "invocations": ["x --shard 0/2"]}
    b = {**study, "runs": [{"label": "a", "start": "random", "seed": 0}, {"label": "b", "start": "random", "seed": 0}],
         "dimensions": {"b": 8}, "baselines": {"3": 0.4}, "invocations": ["x --shard 1/2"]}
    data_aware.absorb(a, b, Path("b.json"))
    assert [r["label"] for r in a["runs"]] == ["a", "b"]
    assert a["dimensions"] == {"a": 7, "b": 8} and a["baselines"] == {"2": 0.5, "3": 0.4}
    assert a["invocations"] == ["x --shard 0/2", "x --shard 1/2"]
    with pytest.raises(SystemExit, match="same study"):
        data_aware.absorb(a, {**b, "steps_cap": 20}, Path("b.json"))
