"""Accounting: encoder/MLP/total parameters and FLOPs agree with structlayers and FlopCounterMode."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

import structlayers
from atompaint.cli import main
from atompaint.encoders import EncoderConfig, build_encoder
from atompaint.encoders.costs import encoder_cost, encoder_flops, measure_peak_memory
from atompaint.heads import HeadConfig
from atompaint.tasks.neighbor_loc.count import count_neighbor_loc
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from structlayers.utils.report import human

warnings.filterwarnings("ignore", message=".*py3nj.*")

ENCODER = dict(architecture="shallow", input_size=7, in_channels=2, width=1, max_channels=2, band_limit=1, grid_size=1)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_encoder(EncoderConfig(**ENCODER))


def test_encoder_flops_match_flop_counter_on_escnn_model(encoder):
    encoder.eval()
    x = torch.zeros(1, 2, 7, 7, 7)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder.fields(x)
    assert encoder_flops(encoder) == counter.get_total_flops() > 0


def test_counts_agree_with_structlayers(encoder):
    heads = {
        "dense": HeadConfig(hidden=[64]),
        "acdc": HeadConfig(hidden=[64], layer="acdc:depth=4"),
    }
    table = count_neighbor_loc(encoder, 6, heads, memory_batch_size=2)
    by_label = {c.label: c for c in table.columns}
    for label, config in heads.items():
        model = NeighborLocClassifier(encoder, 6, config).eval()
        features = torch.zeros(1, model.head.in_features)
        report = structlayers.count(model.head, features)
        column = by_label[label]
        assert column.mlp.params == report.total_params
        assert column.mlp.flops == report.total_flops
        assert column.encoder.params == sum(p.numel() for p in encoder.parameters())
        assert column.encoder.flops == 2 * encoder_cost(encoder).total.total
        assert column.encoder_matmul_flops == 2 * encoder_flops(encoder)
        assert column.total.params == column.encoder.params + column.mlp.params
        assert column.total.flops == column.encoder.flops + column.mlp.flops
        assert column.peak_memory_bytes is not None and column.peak_memory_bytes > 0
    dense_mlp = NeighborLocClassifier(encoder, 6, heads["dense"]).head
    assert by_label["dense"].mlp.params == sum(p.numel() for p in dense_mlp.parameters())
    assert by_label["acdc"].mlp.params < by_label["dense"].mlp.params
    text = table.to_text()
    assert "encoder (2 views) params" in text and "MLP FLOPs" in text and "peak memory" in text
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    assert rows["MLP params"].split()[-2:] == [human(by_label["dense"].mlp.params), human(by_label["acdc"].mlp.params)]
    memory = human(by_label["acdc"].peak_memory_bytes, "B", 1024)
    assert rows["peak memory fwd+bwd (batch 2)"].endswith(memory) and memory.endswith("iB")


def test_peak_memory_grows_with_batch(encoder):
    model = NeighborLocClassifier(encoder, 6, HeadConfig(hidden=[32]))
    small = measure_peak_memory(model, tuple(torch.rand(2, 2, 2, 7, 7, 7)))
    large = measure_peak_memory(model, tuple(torch.rand(2, 64, 2, 7, 7, 7)))
    assert large > small >= 0


def test_count_cli(tmp_path, capsys):
    config = {
        "name": "tiny",
        "task": "neighbor-loc",
        "encoder": {k: v for k, v in ENCODER.items() if k not in ("input_size", "in_channels")},
        "head": {"hidden": [32]},
        "data": {"structure_dir": str(tmp_path), "image": {"length_voxels": 7, "channels": [["C"], ["*"]]}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["count", str(path), "--compare", "heads", "--head-depth", "2", "--memory-batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "dense" in out and "compressed, collapsed" in out and "acdc x2" in out
    assert main(["count", str(path), "--compare", "heads", "--json", "-", "--memory-batch-size", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["label"] for c in data["columns"]] == ["dense", "compressed", "compressed, collapsed"]
    assert data["columns"][0]["mlp"]["params"] == (2 * 2 * 10 + 1) * 32 + (32 + 1) * 6
    assert all(c["peak_memory_bytes"] is None for c in data["columns"])
    json_path = tmp_path / "out" / "count.json"
    assert main(["count", str(path), "--compare", "heads", "--json", str(json_path), "--memory-batch-size", "0"]) == 0
    assert "MLP params" in capsys.readouterr().out  # the table still goes to stdout
    assert json.loads(json_path.read_text()) == data
    assert main(["count", str(tmp_path / "missing.yaml")]) == 2


def test_count_cli_bare_json_is_deprecated_but_works(tmp_path, capsys):
    config = {
        "name": "tiny", "task": "neighbor-loc", "encoder": {k: v for k, v in ENCODER.items() if k != "input_size"},
        "head": {"hidden": [8]}, "data": {"image": {"length_voxels": 7, "channels": [["C"], ["*"]]}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.warns(FutureWarning, match="bare --json"):
        assert main(["count", str(path), "--memory-batch-size", "0", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["config"] == "tiny"
    assert "deprecated" in captured.err
