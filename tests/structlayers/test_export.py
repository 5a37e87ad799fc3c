"""structlayers.export: ONNX files run in onnxruntime and torch.export programs run on CPU with the
eager outputs (within 1e-5), for ResNet18 with replaced layers and for an atompaint MLP head."""

from __future__ import annotations

import pytest
import torch

import structlayers
from structlayers.lab.models import build_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def onnx_outputs(path, x: torch.Tensor):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def resnet(layer: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet18", width=8)
    x = torch.randn(1, 3, 32, 32)
    model, _ = structlayers.replace(model, layer, ["pointwise", "linear"], example_input=x, **options)
    with torch.no_grad():  # away from the identity initialisation, so the outputs test something
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


REPLACEMENTS = [("acdc", {"depth": 2}), ("afdf", {"depth": 2, "inner_shuffle": "riffle"})]


@pytest.mark.parametrize("form", ["dense-dct", "collapsed"])
@pytest.mark.parametrize(("layer", "options"), REPLACEMENTS, ids=["acdc", "afdf"])
def test_resnet18_with_replaced_layers(tmp_path, layer: str, options: dict, form: str) -> None:
    model = resnet(layer, **options)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    path = structlayers.export(model, x[:2], "onnx", form, tmp_path / "model.onnx")
    onnx.checker.check_model(str(path))
    torch.testing.assert_close(onnx_outputs(path, x), expected, atol=1e-5, rtol=1e-5)  # batch of 3: dynamic
    program = structlayers.export(model, x[:2], "torch.export", form)
    torch.testing.assert_close(program.module()(x), expected, atol=1e-5, rtol=1e-5)
    if form == "dense-dct":  # the structure is kept: same parameters, no FFT in the graph
        assert not any("fft" in str(n.target) for n in program.graph.nodes)
        assert sum(p.numel() for p in structlayers.exportable(model).parameters()) == sum(
            p.numel() for p in model.parameters())


def test_atompaint_mlp_head(tmp_path) -> None:
    from atompaint.heads import HeadConfig, MLPHead

    torch.manual_seed(0)
    head = MLPHead(40, 6, HeadConfig(hidden=[32, 24], layer="acdc:depth=3:init=uniform", dropout=0.1)).eval()
    x = torch.randn(5, 40)
    with torch.no_grad():
        expected = head(x)
    for form in ("dense-dct", "collapsed"):
        path = structlayers.export(head, x, "onnx", form, tmp_path / f"head-{form}.onnx")
        torch.testing.assert_close(onnx_outputs(path, x), expected, atol=1e-5, rtol=1e-5)
        program = structlayers.export(head, x, "torch.export", form, tmp_path / f"head-{form}.pt2")
        torch.testing.assert_close(torch.export.load(str(tmp_path / f"head-{form}.pt2")).module()(x), expected,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(program.module()(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(structlayers.available()))
def test_every_layer_exports_in_its_dense_transform_form(name: str) -> None:
    layer = structlayers.create(name, 12, 9, **({"depth": 2, "factor": "afdf"} if name == "stack" else {}))
    x = torch.randn(4, 12)
    with torch.no_grad():
        expected = layer(x)
    program = structlayers.export(layer, x, "torch.export")
    torch.testing.assert_close(program.module()(x), expected, atol=1e-5, rtol=1e-5)


def test_bad_arguments() -> None:
    layer = structlayers.create("acdc", 4, 4)
    with pytest.raises(ValueError, match="format"):
        structlayers.export(layer, torch.randn(2, 4), "tflite")
    with pytest.raises(ValueError, match="form"):
        structlayers.export(layer, torch.randn(2, 4), "onnx", "sparse", "x.onnx")
    with pytest.raises(ValueError, match="path"):
        structlayers.export(layer, torch.randn(2, 4), "onnx")
