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
