"""Heads: structlayers plugins inside the MLP, dense <-> compressed swaps, collapse, task models."""

from __future__ import annotations

import warnings

import pytest
import torch

import structlayers
from atompaint.encoders import EncoderConfig, build_encoder
from atompaint.heads import HeadConfig, MLPHead
from atompaint.tasks.lba.model import AffinityRegressor
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from structlayers import LayerSpec
from structlayers.base import StructuredLinear
from structlayers.configs import ConfigError, from_dict, replace_fields, to_dict

warnings.filterwarnings("ignore", message=".*py3nj.*")


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_encoder(EncoderConfig(
        architecture="shallow", input_size=7, in_channels=2, width=1, max_channels=2, band_limit=1, grid_size=1,
    ))


def test_dense_and_acdc_heads_have_the_same_shapes():
    dense = MLPHead(64, 6, HeadConfig(hidden=[128, 128]))
    acdc = MLPHead(64, 6, HeadConfig(hidden=[128, 128], layer="acdc:depth=4"))
    x = torch.randn(5, 64)
    assert dense(x).shape == acdc(x).shape == (5, 6)
    plugins = [m for m in acdc.layers if isinstance(m, StructuredLinear)]
    assert [type(m).name for m in plugins] == ["stack", "stack", "dense"]
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(acdc) < count(dense) / 4


def test_every_head_layer_is_a_plugin_and_options_reach_it():
    head = MLPHead(32, 3, HeadConfig(hidden=[16], layer=LayerSpec("lowrank", options={"rank": 2}),
                                     compress_output=True))
    plugins = [m for m in head.layers if isinstance(m, StructuredLinear)]
    assert len(plugins) == 2 and all(type(m).name == "lowrank" for m in plugins)
    assert plugins[0].params() < 32 * 16
    with pytest.raises(ValueError):
        MLPHead(32, 3, HeadConfig(hidden=[16], layer="no-such-layer"))
    with pytest.raises(ValueError):
        HeadConfig(activation="swish2")
    with pytest.raises(ValueError, match="rank"):
        HeadConfig(layer="lowrank:rank=two")
    assert HeadConfig(layer="lowrank:rank=2").layer == LayerSpec("lowrank", options={"rank": 2})  # typed


def test_head_reads_the_flat_layout_of_configuration_files():
    """``layer`` / ``depth`` / ``options`` keys (the YAML layout) fold into the head's one LayerSpec."""
    flat = from_dict(HeadConfig, {"hidden": [8], "layer": "lowrank", "options": {"rank": "2"}})
    assert flat.layer == LayerSpec("lowrank", options={"rank": 2})
    assert from_dict(HeadConfig, {"layer": "acdc", "depth": 12}).layer == LayerSpec("acdc", 12)
    assert from_dict(HeadConfig, {"layer": {"name": "acdc", "depth": 3}}).layer == LayerSpec("acdc", 3)
    assert to_dict(flat) == {"hidden": [8], "layer": "lowrank", "depth": None, "options": {"rank": 2},
                             "activation": "relu", "dropout": 0.2, "compress_output": False}
    assert from_dict(HeadConfig, to_dict(flat)) == flat
    assert from_dict(HeadConfig, {"layer": "acdc:depth=2", "options": {"sigma": 0.5}}).layer == LayerSpec(
        "acdc", 2, {"sigma": 0.5})
    deeper = replace_fields(from_dict(HeadConfig, {"layer": "acdc", "depth": 2}), {"depth": 4})
    assert deeper.layer == LayerSpec("acdc", 4)
    with pytest.raises(ConfigError, match="rank"):
        from_dict(HeadConfig, {"layer": "lowrank", "options": {"rank": "two"}})


def test_depth_follows_structlayers_create():
    """A depth makes a stackable layer a stack of that many factors; a dense layer takes no depth."""
    with pytest.raises(ValueError, match="'dense' cannot be stacked"):
        HeadConfig(layer="dense:depth=12")
    with pytest.raises(ValueError, match="'lowrank' cannot be stacked"):
        HeadConfig(layer="lowrank:depth=2:rank=2")
    assert HeadConfig().layer == LayerSpec("dense")
    assert type(MLPHead(16, 4, HeadConfig(hidden=[8])).layers[0]).name == "dense"  # the default head builds
    stack = MLPHead(16, 4, HeadConfig(hidden=[8], layer="afdf:depth=3")).layers[0]
    assert type(stack).name == "stack" and len(stack.factors) == 3
    explicit = MLPHead(16, 4, HeadConfig(hidden=[8], layer="stack:depth=2:factor=acdc")).layers[0]
    assert type(explicit).name == "stack" and len(explicit.factors) == 2


def test_neighbor_loc_head_swap_keeps_shapes_and_encoder(encoder):
    model = NeighborLocClassifier(encoder, 6, HeadConfig(hidden=[64]))
    a, b = torch.rand(2, 4, 2, 7, 7, 7)
    logits = model(a, b)
    assert logits.shape == (4, 6)
    assert model.head.in_features == 2 * encoder.field_features
    model.replace_head(HeadConfig(hidden=[64], layer="acdc:depth=3"))
    assert model.encoder is encoder
    assert model(a, b).shape == (4, 6)
    assert isinstance(model.head.layers[0], StructuredLinear) and type(model.head.layers[0]).name == "stack"


def test_collapse_works_on_the_compressed_model(encoder):
    torch.manual_seed(0)
    model = NeighborLocClassifier(encoder, 6, HeadConfig(hidden=[32], layer="acdc:depth=2", dropout=0.0)).eval()
    a, b = torch.rand(2, 3, 2, 7, 7, 7)
    with torch.no_grad():
        before = model(a, b)
    collapsed, report = structlayers.collapse(model, (a, b))
    with torch.no_grad():
        after = collapsed(a, b)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    assert len(report.choices) == 2  # the two plugins of the head


def test_affinity_regressor_uses_invariant_features(encoder):
    model = AffinityRegressor(encoder, HeadConfig(hidden=[16], layer="acdc:depth=2")).eval()
    x = torch.rand(3, 2, 7, 7, 7)
    with torch.no_grad():
        y = model(x)
        y_rot = model(torch.rot90(x, 1, (2, 4)))
    assert y.shape == (3,)
    torch.testing.assert_close(y_rot, y, atol=1e-3, rtol=1e-3)
    assert model.replace_head(HeadConfig(hidden=[8]))(x).shape == (3,)
