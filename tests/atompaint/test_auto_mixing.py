"""``mixing: auto``: each layer's mixing chosen by (here: fake) measured training time, recorded in
the built config, the state_dict and the count table, cached, and rebuilt without measuring."""

from __future__ import annotations

import warnings

import pytest
import torch

from atompaint.encoders import EncoderConfig, automix, build_encoder
from atompaint.encoders.mixing import IrrepMixing
from atompaint.tasks.neighbor_loc.count import encoder_form

warnings.filterwarnings("ignore", message=".*py3nj.*")

CANDIDATES = ["dense", "acdc:depth=2"]


def _config(**changes) -> EncoderConfig:
    base = dict(architecture="resnet", block="gamma", in_channels=2, input_size=9, width=2, max_channels=4,
                band_limit=1, conv="separable", depthwise="irrep", tensor_product="clebsch-gordan",
                mixing="auto", mixing_candidates=CANDIDATES, mixing_batch=3)
    return EncoderConfig(**(base | changes))


class FakeTimer:
    """Dense blocks cost their input width, ACDC a constant 25: ACDC wins on the wide layers only."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, modules, shape):
        self.calls.append(tuple(shape))
        assert len(modules) == len(CANDIDATES)
        return [float(shape[1]), 25.0]


@pytest.fixture
def fresh_cache(tmp_path):
    from structlayers.utils.cache import set_cache_dir

    set_cache_dir(tmp_path)
    automix._MEASURED.clear(disk=False)
    yield
    automix._MEASURED.clear(disk=False)
    set_cache_dir(None)


def test_auto_mixing_picks_the_fastest_candidate_per_layer_and_records_it(monkeypatch, fresh_cache):
    timer = FakeTimer()
    monkeypatch.setattr(automix, "train_step_seconds", timer)
    torch.manual_seed(0)
    encoder = build_encoder(_config())
    layers = automix.mixing_layers(encoder)
    choices = encoder.config.mixing_choices
    assert set(choices) == set(layers)
    measured = len(timer.calls)  # once per distinct layer shape: layers of one shape share a measurement
    assert measured == len(set(timer.calls)) and 0 < measured <= len(layers)
    for name, mixing in layers.items():
        width = mixing.in_type.size
        assert choices[name] == ("dense" if width < 25 else "acdc:depth=2")
        assert mixing.spec.name == choices[name].split(":")[0]
        assert encoder.mixing_seconds[name] == {"dense": float(width), "acdc:depth=2": 25.0}
    assert {c[0] for c in timer.calls} == {3}  # the configured batch
    assert len(set(choices.values())) == 2, "the fake timer must split the layers between the candidates"
    assert encoder_form(encoder.config).startswith("separable (irrep-wise depthwise) + auto: acdc:depth=2 x")
    assert encoder.state_dict()["mixing_record._extra_state"] == {"mixing_choices": choices}

    # Measured once per layer shape and machine: a second build reads the cache (memory, then disk).
    build_encoder(_config())
    automix._MEASURED.clear(disk=False)  # a new session: only the disk remembers
    build_encoder(_config())
    assert len(timer.calls) == measured

    # The recorded choices rebuild the same model without measuring.
    monkeypatch.setattr(automix, "train_step_seconds", None)
    torch.manual_seed(0)
    again = build_encoder(encoder.config)
    x = torch.randn(2, 2, 9, 9, 9)
    encoder.eval(), again.eval()
    with torch.no_grad():
        again(x)  # eval mode caches escnn's expanded filters, as measuring did in ``encoder``
        again.load_state_dict(encoder.state_dict())
        assert torch.equal(encoder(x), again(x))

    other = dict.fromkeys(choices, "dense")
    with pytest.raises(ValueError, match="trained with mixing choices"):
        build_encoder(_config(mixing_choices=other)).load_state_dict(encoder.state_dict())


def test_choose_mixing_times_every_layer_at_its_training_shape():
    encoder = build_encoder(_config(mixing_choices=dict.fromkeys(
        automix.mixing_layers(build_encoder(_config(mixing="dense"))), "dense"))
    )
    seen = []

    def timer(modules, shape):
        seen.append(shape)
        return [2.0, 1.0]

    choices, seconds = automix.choose_mixing(encoder, torch.zeros(1, 2, 9, 9, 9), CANDIDATES, 4, timer)
    assert set(choices.values()) == {"acdc:depth=2"}
    spatial = {s[2:] for s in seen}
    assert (9, 9, 9) in spatial and all(s[0] == 4 for s in seen)
    for name, shape in zip(choices, seen):
        assert shape[1] == automix.mixing_layers(encoder)[name].in_type.size


def test_auto_mixing_configuration_errors():
    with pytest.raises(ValueError, match="takes no mixing_depth"):
        _config(mixing="auto:depth=2")
    with pytest.raises(ValueError):
        _config(mixing_candidates=["dense", "no-such-plugin"])
    with pytest.raises(ValueError, match="unknown layer 'auto'"):
        _config(mixing_candidates=["auto"])
    encoder = build_encoder(_config(mixing="dense"))
    with pytest.raises(ValueError, match="does not have"):
        automix.apply_mixing_choices(encoder, {"body.99.mixing": "dense"})


def test_default_timer_measures_forward_and_backward():
    field_type = automix.mixing_layers(build_encoder(_config(mixing="dense")))["body.1.conv1.mixing"].in_type
    mixing = IrrepMixing(field_type, field_type)
    seconds = automix.train_step_seconds([mixing.linear], (2, mixing.in_type.size, 3, 3, 3), repeats=2)
    assert len(seconds) == 1 and seconds[0] > 0
    assert all(p.grad is None for p in mixing.parameters())
