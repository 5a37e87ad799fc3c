"""Encoders: every architecture builds, trains, is invariant to 90-degree rotations and exports."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atompaint.encoders import (
    EncoderConfig,
    build_encoder,
    channel_schedule,
    plan_no_downsample,
    plan_resnet,
    plan_shallow,
    plan_vgg,
)

warnings.filterwarnings("ignore", message=".*py3nj.*")

# Tiny models: band limit 1 with the 24-point cube grid keeps escnn's construction fast.
SMALL = dict(in_channels=2, width=1, max_channels=2, band_limit=1, grid_size=1)
VARIANTS = [
    ("no-downsample", "gamma", 7),
    ("vgg", "gamma", 11),
    ("shallow", "gamma", 7),
    ("resnet", "basic", 7),
    ("resnet", "alpha", 7),
    ("resnet", "gamma", 7),
]
ROTATIONS = [(1, (2, 3)), (1, (3, 4)), (3, (2, 4))]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: f"{v[0]}-{v[1]}-{v[2]}")
def encoder(request):
    architecture, block, size = request.param
    torch.manual_seed(0)
    return build_encoder(EncoderConfig(architecture=architecture, block=block, input_size=size, **SMALL))


def _input(encoder, batch=3):
    cfg = encoder.config
    torch.manual_seed(1)
    return torch.rand(batch, cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)


def test_forward_backward(encoder):
    encoder.train()
    x = _input(encoder)
    y = encoder(x)
    assert y.shape == (3, encoder.out_features)
    assert torch.isfinite(y).all()
    y.pow(2).sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    encoder.zero_grad(set_to_none=True)


@pytest.mark.parametrize("k, dims", ROTATIONS)
def test_invariant_to_90_degree_rotations(encoder, k, dims):
    encoder.eval()
    x = _input(encoder)
    with torch.no_grad():
        y = encoder(x)
        y_rot = encoder(torch.rot90(x, k, dims))
    assert y.abs().max() > 1e-3, "features are trivially zero"
    torch.testing.assert_close(y_rot, y, atol=1e-3, rtol=1e-3)


def test_fields_are_equivariant_not_invariant(encoder):
    """The pooled fields rotate with the input (that is what the neighbor-location head needs)."""
    encoder.eval()
    x = _input(encoder)
    with torch.no_grad():
        f = encoder.fields(x)
        f_rot = encoder.fields(torch.rot90(x, 1, (2, 3)))
        # Per-field norms are invariant, the fields themselves are not.
        d = encoder.out_type.representations[0].size
        norms = f.view(len(f), -1, d).norm(dim=-1)
        norms_rot = f_rot.view(len(f), -1, d).norm(dim=-1)
    torch.testing.assert_close(norms_rot, norms, atol=1e-3, rtol=1e-3)
    assert (f_rot - f).abs().max() > 1e-4


def test_export_matches(encoder):
    encoder.eval()
    x = _input(encoder)
    exported = encoder.export()
    assert not any("escnn" in type(m).__module__ for m in exported.modules())
    with torch.no_grad():
        torch.testing.assert_close(exported(x), encoder(x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(exported.fields(x), encoder.fields(x), atol=1e-5, rtol=1e-4)


def test_spatial_plans_match_the_seed():
    assert [s.size_out for s in plan_shallow(21)] == [19, 9, 7, 3, 1]
    assert [s.stride for s in plan_shallow(21)] == [1, 2, 1, 2, 1]
    vgg = plan_vgg(21, repeats=1)
    assert [s.size_out for s in vgg] == [19, 17, 17, 9, 9, 5, 3, 1]
    assert [s.padding for s in vgg] == [0, 0, 1, 1, 1, 1, 0, 0]
    assert len(plan_no_downsample(21)) == 10
    assert plan_resnet(33) == [33, 17, 9, 5, 3]
    assert plan_resnet(21) == [21, 11, 5, 3]
    for size in (7, 9, 11, 13, 15, 19, 21, 33):
        assert all(s.size_out % 2 == 1 for s in plan_shallow(size))
        assert plan_shallow(size)[-1].size_out == 1
        assert plan_vgg(size, 2)[-1].size_out == 1


def test_channel_schedules():
    assert channel_schedule(2, 16, 6, "log") == [2, 3, 5, 7, 11, 16]
    assert channel_schedule(2, 16, 8, "linear") == [2, 4, 6, 8, 10, 12, 14, 16]
    with pytest.raises(ValueError):
        channel_schedule(2, 16, 3, "cubic")


def test_bottleneck_and_band_limit_change_the_model():
    base = dict(architecture="resnet", block="basic", input_size=7, in_channels=2, width=2, max_channels=4,
                band_limit=1, grid_size=1)
    full = build_encoder(EncoderConfig(**base))
    narrow = build_encoder(EncoderConfig(**base, bottleneck=0.5))
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(narrow) < count(full)
    assert full.out_type.representations[0].size == 10  # rho_0 + 3 rho_1
    assert full.out_features == 4 * 4  # 4 fields x (1 + 3) irreps


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="odd"):
        EncoderConfig(input_size=20)
    with pytest.raises(ValueError, match="architecture"):
        EncoderConfig(architecture="unet")
    with pytest.raises(ValueError, match="block"):
        EncoderConfig(block="delta")
    encoder = build_encoder(EncoderConfig(architecture="shallow", input_size=7, **SMALL))
    with pytest.raises(ValueError, match="expected input"):
        encoder(torch.zeros(1, 3, 7, 7, 7))


@pytest.fixture(scope="module")
def shallow_gamma():
    torch.manual_seed(0)
    return build_encoder(EncoderConfig(architecture="shallow", block="gamma", input_size=7, **SMALL)).eval()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    k=st.integers(1, 3),
    axes=st.sampled_from([(2, 3), (3, 4), (2, 4)]),
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 3),
)
def test_invariance_holds_for_random_inputs_and_rotations(shallow_gamma, k, axes, seed, batch):
    """Property: any composition of grid rotations, any input, gives the same invariant features."""
    x = torch.rand(batch, 2, 7, 7, 7, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = shallow_gamma(x)
        y_rot = shallow_gamma(torch.rot90(torch.rot90(x, k, axes), 1, (2, 4)))
        y_ref = shallow_gamma(torch.rot90(x, 1, (2, 4)))
    torch.testing.assert_close(y_rot, y, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(y_ref, y, atol=1e-3, rtol=1e-3)


def test_the_mixing_is_one_spec_written_flat_with_its_old_keys():
    from atompaint.encoders.mixing import MixingSpec
    from structlayers.configs import ConfigError, from_dict, replace_fields, to_dict

    old = {"conv": "separable", "mixing": "acdc", "mixing_depth": 2, "mixing_options": {"sigma": "0.1"}}
    config = from_dict(EncoderConfig, old)  # a config file, or a checkpoint written before the spec
    assert config.mixing == MixingSpec("acdc", 2, {"sigma": 0.1})
    flat = to_dict(config)
    assert (flat["mixing"], flat["mixing_depth"], flat["mixing_options"]) == ("acdc", 2, {"sigma": 0.1})
    assert from_dict(EncoderConfig, flat) == config
    # --set encoder.mixing=... replaces the whole layer; the flat keys then update it
    changed = replace_fields(config, {"mixing": "lowrank:rank=2"})
    assert changed.mixing == MixingSpec("lowrank", None, {"rank": 2})
    assert replace_fields(config, {"mixing_depth": "3"}).mixing == MixingSpec("acdc", 3, {"sigma": 0.1})
    assert EncoderConfig(mixing="auto").mixing.auto and EncoderConfig().mixing == MixingSpec("dense")
    with pytest.raises(ConfigError, match="no option"):
        replace_fields(config, {"mixing_options": {"rank": 2}})
