"""timm / torchvision models by name for count, replace and train (random weights, no downloads).
Skipped unless both packages import (the ``zoo`` extra)."""

from __future__ import annotations

import pytest
import torch

import structlayers
from structlayers.lab.models import build_model, example_input, get_spec, is_zoo_name, parse_model_options
from structlayers.lab.models.zoo import import_torchvision

try:
    import_torchvision()
    import timm  # noqa: F401
except ImportError:
    pytest.skip("timm and torchvision are not installed (the zoo extra)", allow_module_level=True)


def test_names_and_options() -> None:
    assert is_zoo_name("timm:resnet18") and is_zoo_name("torchvision:resnet18")
    assert not is_zoo_name("resnet18") and not is_zoo_name("timm:") and not is_zoo_name("keras:resnet")
    assert get_spec("timm:resnet18").zoo
    assert parse_model_options("timm:vit_tiny_patch16_224", {"img_size": "32", "qkv_bias": "false"}) == {
        "img_size": 32, "qkv_bias": False}
    with pytest.raises(ValueError, match="timm has no model"):
        build_model("timm:not_a_model")
    with pytest.raises(ValueError, match="torchvision has no model"):
        build_model("torchvision:not_a_model")


def test_timm_resnet18_count_and_replace() -> None:
    model = build_model("timm:resnet18", num_classes=10)
    x = example_input("timm:resnet18", 1, model)[..., :64, :64]
    new, report = structlayers.replace(model, "acdc", ["pointwise", "linear"], example_input=x, depth=2)
    assert {"fc", "layer2.0.downsample.0"} <= set(report.names)
    assert report.total_params_after < report.total_params_before
    with torch.no_grad():
        assert new.eval()(x).shape == (1, 10)


def test_torchvision_mobilenet_v3_small_replace() -> None:
    model = build_model("torchvision:mobilenet_v3_small", num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    new, report = structlayers.replace(model, "lowrank", ["pointwise", "linear"], example_input=x, rank=4)
    kinds = {r.kind for r in report.replaced}
    assert kinds == {"pointwise", "linear"} and len(report.replaced) > 20
    assert all("grouped convolution" in s.reason for s in report.skipped) or not report.skipped
    with torch.no_grad():
        assert new.eval()(x).shape == (1, 10)


def test_vit_tiny_mlps_and_attention_projections() -> None:
    model = build_model("timm:vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=10).eval()
    x = example_input("timm:vit_tiny_patch16_224", 2, model)
    assert x.shape == (2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    new, report = structlayers.replace(model, "dense", ["blocks.*.mlp.*", "blocks.*.attn.*"], example_input=x,
                                       init_from="project")
    names = set(report.names)
    assert {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.11.mlp.fc2"} <= names
    assert len(names) == 12 * 4 and not report.skipped
    with torch.no_grad():  # the dense plugin projects exactly: the same network
        torch.testing.assert_close(new.eval()(x), before, atol=1e-5, rtol=1e-5)
    assert isinstance(new.blocks[0].attn.qkv, structlayers.StructuredLinear)


def test_count_and_train_cli(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from structlayers.cli import main

    assert main(["count", "timm:vit_tiny_patch16_224", "-m", "img_size=32", "-m", "patch_size=8",
                 "--replace", "acdc", "--depth", "2", "--targets", "blocks.*.mlp.*"]) == 0
    out = capsys.readouterr().out
    assert "blocks.0.mlp.fc1" in out and "DIFFERS" not in out
    # MNIST (packaged): timm gets the task's classes and one input channel.
    assert main(["train", "mnist", "--model", "timm:resnet18", "--replace", "acdc", "--depth", "2",
                 "--targets", "fc", "--fast-dev-run", "1", "--no-progress", "--out-dir", str(tmp_path / "run")]) == 0
