import dataclasses
import sys
import types
from importlib import metadata

import pytest
import torch

import structlayers
from structlayers import registry
from structlayers.cli import main
from structlayers.layers.dense import Dense


class ScaledIdentity(Dense):
    """A third-party layer: a dense layer initialised at twice the identity."""

    def __init__(self, in_features: int, out_features: int, *, scale: float = 2.0) -> None:
        super().__init__(in_features, out_features, bias=False)
        with torch.no_grad():
            self.weight.copy_(scale * torch.eye(out_features, in_features))


@pytest.fixture
def fake_entry_point(monkeypatch: pytest.MonkeyPatch):
    module = types.ModuleType("thirdparty_layers")
    module.ScaledIdentity = ScaledIdentity
    monkeypatch.setitem(sys.modules, "thirdparty_layers", module)
    ep = metadata.EntryPoint("scaledid", "thirdparty_layers:ScaledIdentity", registry.ENTRY_POINT_GROUP)
    broken = metadata.EntryPoint("broken", "thirdparty_missing:Layer", registry.ENTRY_POINT_GROUP)

    real_entry_points = metadata.entry_points

    def entry_points(**kwargs):
        if kwargs.get("group") != registry.ENTRY_POINT_GROUP:
            return real_entry_points(**kwargs)
        return metadata.EntryPoints([ep, broken])

    monkeypatch.setattr(registry.metadata, "entry_points", entry_points)
    with pytest.warns(UserWarning, match="broken"):
        registry.reload_entry_points()
    yield
    registry._REGISTRY.pop("scaledid", None)
    registry._entry_points_loaded = False


def test_entry_point_discovery(fake_entry_point, capsys: pytest.CaptureFixture) -> None:
    assert "scaledid" in structlayers.available()
    layer = structlayers.create("scaledid", 4, 4, scale=3.0)
    torch.testing.assert_close(layer(torch.ones(1, 4)), torch.full((1, 4), 3.0))
    assert main(["layers"]) == 0
    assert "scaledid" in capsys.readouterr().out


def test_builtins_are_registered() -> None:
    assert {"dense", "lowrank", "acdc", "afdf", "stack", "blockdiag"} <= set(structlayers.available())


def test_register_rejects_duplicates_and_non_layers() -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register("acdc")(ScaledIdentity)
    with pytest.raises(TypeError, match="StructuredLinear"):
        registry.register("notalayer")(torch.nn.Linear)


def test_layers_cli_lists_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["layers", "stack"]) == 0
    out = capsys.readouterr().out
    assert "shuffle='riffle'" in out and "depth=2" in out
    assert main(["layers", "nope"]) == 2
    assert "unknown layer 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    ({"sigma": "a"}, "layer option 'sigma': expected a number, got 'a'"),
    ({"sigma": float("inf")}, "layer option 'sigma': expected a finite number"),
    ({"sigma": float("nan")}, "layer option 'sigma': expected a finite number"),
    ({"bias": "maybe"}, "layer option 'bias': expected true or false"),
    ({"no_such": 1}, "has no option"),
])
def test_create_checks_options_as_parse_options_does(options: dict, message: str) -> None:
    for build in (lambda: structlayers.create("acdc", 8, 8, **options),
                  lambda: registry.parse_options("acdc", options),
                  lambda: structlayers.LayerSpec("acdc", None, options)):
        with pytest.raises(ValueError, match=message):
            build()
    layer = structlayers.create("acdc", 8, 8, depth=2, sigma="0.5", bias="false")
    assert layer.to_dense()[1] is None


def test_layer_spec_text_mapping_and_build() -> None:
    from structlayers.configs import ConfigError, coerce, from_dict, to_dict

    spec = structlayers.LayerSpec.parse("acdc:depth=3:sigma=0.1:bias=false")
    assert spec == structlayers.LayerSpec("acdc", 3, {"sigma": 0.1, "bias": False})
    assert structlayers.LayerSpec.parse(str(spec)) == spec
    assert from_dict(structlayers.LayerSpec, to_dict(spec)) == spec
    assert coerce("lowrank:rank=2", structlayers.LayerSpec) == structlayers.LayerSpec("lowrank", options={"rank": 2})
    assert spec.label == "acdc x3" and hash(spec) == hash(structlayers.LayerSpec("acdc", 3, {"sigma": 0.1}))
    layer = spec.build(8, 6)
    assert (layer.in_features, layer.out_features, layer.depth) == (8, 6, 3)
    assert spec.build(8, 8, bias=True).to_dense()[1] is not None
    assert spec.replace(depth=None).build(8, 8).name == "acdc"
    with pytest.raises(ValueError, match="depth must be positive"):
        structlayers.LayerSpec("acdc", 0)
    with pytest.raises(ValueError, match="cannot be stacked"):
        structlayers.LayerSpec.parse("dense:depth=2")
    with pytest.raises(ValueError, match="expected name:key=value"):
        structlayers.LayerSpec.parse("acdc:sigma")
    with pytest.raises(ConfigError, match="rank"):
        coerce("lowrank:rank=two", structlayers.LayerSpec, "head.layer")


def test_every_plugin_speaks_the_one_init_vocabulary() -> None:
    from structlayers.layers import blockproduct, butterfly, init, projection
    from structlayers.layers.init import INIT_WORDS

    for words in (init.INITS, blockproduct.INITS, butterfly.INITS, projection.DIAGONAL_INITS):
        assert set(words.accepted) <= set(INIT_WORDS), words
    for name in registry.available():
        defaults = {o.name: o.default for o in registry.options(name)}
        if "init" in defaults and defaults["init"] is not None:
            assert defaults["init"] in INIT_WORDS, name
    for name in ("monarch", "kronecker", "circulant", "toeplitz"):
        with pytest.warns(DeprecationWarning, match="init='uniform' is deprecated.*use init='linear'"):
            structlayers.create(name, 8, 8, init="uniform")
        with pytest.raises(ValueError, match="unknown init"):
            structlayers.create(name, 8, 8, init="normal")
    with pytest.warns(DeprecationWarning):
        assert structlayers.create("monarch", 8, 8, init="uniform").init == "linear"
    uniform = structlayers.create("acdc", 64, 64, init="uniform")
    assert uniform.A.min() >= -1 and uniform.A.max() <= 1


def test_replacements_start_from_the_same_words_in_the_api_and_configs() -> None:
    from structlayers.lab.training import ModelConfig
    from structlayers.surgery import INITS, check_init_from

    assert ModelConfig().init == INITS[0] == "scratch"
    with pytest.warns(DeprecationWarning, match="'random' is deprecated"):
        assert check_init_from("random") == "scratch"
    with pytest.warns(DeprecationWarning):
        assert ModelConfig(init="random").init == "scratch"
    with pytest.raises(ValueError, match="unknown init_from"):
        check_init_from("zeros")


def test_lab_model_config_holds_one_layer_spec_written_flat() -> None:
    from structlayers.configs import from_dict, to_dict
    from structlayers.lab.training import ModelConfig
    from structlayers.surgery import REPLACE_FIT

    config = from_dict(ModelConfig, {"name": "resnet18", "layer": "lowrank", "layer_options": {"rank": "8"},
                                     "replace": True, "fit_steps": 7})
    assert config.layer == structlayers.LayerSpec("lowrank", None, {"rank": 8})
    assert config.fit == dataclasses.replace(REPLACE_FIT, steps=7), "one FitOptions, written as fit_steps"
    flat = to_dict(config)
    assert (flat["layer"], flat["depth"], flat["layer_options"], flat["fit_steps"]) == ("lowrank", None, {"rank": 8}, 7)
    assert from_dict(ModelConfig, flat) == config
    assert ModelConfig("mnist-stack", "acdc:depth=4").layer.depth == 4
