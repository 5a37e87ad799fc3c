"""collapse() decides by measured time by default, caches the measurements per shape on disk (as the
``backend="auto"`` autotuner does), falls back to FLOPs where nothing can be timed, and reports both
costs.  Timings are replaced by fixed numbers wherever a decision is checked."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import structlayers
from structlayers.utils import autotune, cache, costs


@pytest.fixture()
def cache_dir(tmp_path):
    cache.set_cache_dir(tmp_path)
    costs._MEASURED.clear(disk=False)
    yield tmp_path
    costs._MEASURED.clear(disk=False)
    cache._override = "unset"  # back to $STRUCTLAYERS_CACHE_DIR (the test session's temporary folder)
    for c in cache._CACHES.values():
        c.reload()


def test_measured_cost_is_the_default_and_both_costs_are_reported(cache_dir, monkeypatch) -> None:
    calls = []

    def fake(layer, rows, repeats=7):
        calls.append(rows)
        return (3e-6, 1e-6)  # dense faster, although it has more FLOPs

    monkeypatch.setattr(costs, "measure_forms", fake)
    layer = structlayers.create("acdc", 64, 64)
    model, report = structlayers.collapse(nn.Sequential(layer), torch.randn(4, 64))
    (choice,) = report.choices
    assert choice.cost == "measured" and choice.chosen == "dense" and isinstance(model[0], nn.Linear)
    assert (choice.structured_seconds, choice.dense_seconds) == (3e-6, 1e-6)
    assert choice.structured_flops == layer.flops(4) < choice.dense_flops
    assert "measured" in report.to_text() and "3.0 us" in report.to_text()
    # by FLOPs the same layer stays structured
    _, by_flops = structlayers.collapse(nn.Sequential(layer), torch.randn(4, 64), cost="flops")
    assert by_flops.choices[0].chosen == "structured" and by_flops.choices[0].structured_seconds is None
    # persisted: a fresh process (empty memory cache) reads it instead of measuring
    costs._MEASURED.clear(disk=False)
    cache.persistent("collapse_costs").reload()
    structlayers.collapse(nn.Sequential(structlayers.create("acdc", 64, 64)), torch.randn(4, 64))
    assert calls == [4]
    stored = json.loads((cache_dir / "collapse_costs.json").read_text())
    (key, value), = stored.items()
    assert "rows 4" in key and "torch.float32" in key and value == [3e-6, 1e-6]


def test_meta_device_falls_back_to_flops(cache_dir) -> None:
    with torch.device("meta"):
        model = nn.Sequential(structlayers.create("acdc", 256, 256, depth=2),
                              structlayers.create("acdc", 256, 8, depth=8))
    _, report = structlayers.collapse(model, batch_shape=(4,))
    assert [c.cost for c in report.choices] == ["flops", "flops"]
    assert all("timing impossible" in c.reason for c in report.choices)
    assert [c.chosen for c in report.choices] == ["structured", "dense"]


def test_autotune_decisions_persist_on_disk(cache_dir, monkeypatch) -> None:
    from structlayers.utils.timing import Timing

    autotune.clear()
    monkeypatch.setattr(autotune, "time_interleaved", lambda fns, device, **k: [Timing((1.0,)), Timing((2.0,))])
    layer = structlayers.create("acdc", 16, 16, backend="auto")
    layer(torch.randn(3, 16))
    assert list(autotune.cache().values()) == ["fft"]
    autotune._DECISIONS.clear(disk=False)  # a new session: only the disk remembers
    monkeypatch.setattr(autotune, "time_interleaved", lambda *a, **k: pytest.fail("measured again"))
    assert autotune.cached_backend(layer, 3, torch.device("cpu"), torch.float32) == "fft"
    assert (cache_dir / "autotune.json").is_file()
    autotune.clear()
    assert not (cache_dir / "autotune.json").exists()


def test_measurements_measure_once_per_key_and_never_on_meta(cache_dir) -> None:
    from structlayers.utils.timing import TimingUnavailable

    store = cache.Measurements("test_measurements", lambda v: v if isinstance(v, float) else None)
    calls = []
    assert store.get("k|cpu", "cpu", lambda: calls.append(1) or 2.0) == 2.0
    assert store.get("k|cpu", "cpu", lambda: pytest.fail("measured again")) == 2.0
    store.clear(disk=False)
    assert store.cached("k|cpu", "cpu") == 2.0 and calls == [1]  # read back from disk
    with pytest.raises(TimingUnavailable):
        store.get("k|meta", "meta", lambda: pytest.fail("measured on meta"))
    layer = structlayers.create("acdc", 16, 16, backend="auto")
    assert autotune.choose_backend(layer, 3, torch.device("meta"), torch.float32) == "fft"
    assert autotune.cached_backend(layer, 3, torch.device("meta"), torch.float32) is None
    store.clear()
    assert store.cached("k|cpu", "cpu") is None


def test_cache_location_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(cache, "_override", "unset")
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.setenv(cache.ENV_VAR, "none")
    assert cache.cache_dir() is None
    monkeypatch.delenv(cache.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "structlayers"


def test_a_damaged_cache_file_is_a_cold_cache(cache_dir) -> None:
    (cache_dir / "autotune.json").write_text("{not json")
    store = cache.persistent("autotune")
    store.reload()
    assert store.get("anything") is None
    store.set("k", "fft")
    assert json.loads((cache_dir / "autotune.json").read_text()) == {"k": "fft"}
