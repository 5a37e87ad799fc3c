"""Fault probes of the layers themselves: sizes whose parameters or dense forms cannot fit (refused
up front with the estimate), bf16 parameters, export of every plugin in every form, a plugin
shared by two places of a model, and TorchScript."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import structlayers
from structlayers.export import FORMS, export, exportable
from structlayers.registry import available
from structlayers.utils.memory import AllocationTooLargeError


@pytest.mark.parametrize(("build", "message"), [
    (lambda: structlayers.create("kronecker", 2**24, 2**24).to_dense(),
     "the dense form of layer 'kronecker' (16777216 -> 16777216) needs about"),
    (lambda: structlayers.create("toeplitz", 2**25, 2**25).to_dense(),
     "the dense form of layer 'toeplitz' (33554432 -> 33554432) needs about"),
    (lambda: structlayers.create("monarch", 2**16, 2**16).to_dense(),
     "the dense form of layer 'monarch' (65536 -> 65536) needs about"),
    (lambda: structlayers.create("lowrank_diag", 2**20, 2**20, rank=4).to_dense(),
     "the dense form of layer 'lowrank_diag' (1048576 -> 1048576) needs about"),
    (lambda: structlayers.create("lowrank", 2**21, 2**21, rank=8).to_dense(),
     "the dense form of layer 'lowrank' (2097152 -> 2097152) needs about"),
    (lambda: structlayers.create("monarch", 2**22, 2**22),
     "layer 'monarch' (4194304 -> 4194304) with 17179869184 parameters needs about"),
    (lambda: structlayers.create("lowrank_diag", 10**6, 10**6, rank=10**6),
     "layer 'lowrank_diag' (1000000 -> 1000000) with 2000000000000 parameters needs about"),
    (lambda: structlayers.create("blockdiag", 2**21, 2**21, groups=1),
     "layer 'blockdiag' (2097152 -> 2097152) with 4398046511104 parameters needs about"),
])
def test_sizes_beyond_the_memory_are_refused_with_the_estimate(build, message: str) -> None:
    with pytest.raises(AllocationTooLargeError) as err:
        build()
    assert message in str(err.value) and "available on cpu" in str(err.value)


@pytest.mark.parametrize("name", sorted(available()))
def test_bfloat16_parameters_work_for_every_layer(name: str) -> None:
    """``layer.to(torch.bfloat16)``: bfloat16 in, bfloat16 out, close to float32, and bfloat16
    gradients for every parameter (FFT layers compute in float32 and cast back)."""
    options = {"depth": 2} if name == "stack" else {}
    torch.manual_seed(0)
    layer = structlayers.create(name, 12, 10, **options)
    x = torch.randn(3, 12)
    with torch.no_grad():
        reference = layer(x)
    half = layer.to(torch.bfloat16)
    y = half(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), reference, atol=0.05 * float(reference.abs().max()), rtol=0.05)
    y.float().square().sum().backward()
    for pname, p in half.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.bfloat16 and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize(("name", "options"), [
    ("circulant", {}), ("toeplitz", {}), ("circulant", {"depth": 2}),
    ("afdf", {"depth": 2, "cascade": "complex"}), ("afdf", {"depth": 3, "cascade": "complex", "shuffle": "random"}),
])
@pytest.mark.parametrize("form", FORMS)
def test_fft_layers_export_in_every_form(tmp_path: Path, name: str, options: dict, form: str) -> None:
    """Circulant and Toeplitz layers export as a gather and a matmul, a complex AFDF cascade with
    its complex signal as real and imaginary parts: ONNX and torch.export both run them."""
    torch.manual_seed(0)
    model = nn.Sequential(structlayers.create(name, 12, 10, **options)).eval()
    x = torch.randn(4, 12)
    with torch.no_grad():
        expected = model(x)
        program = export(model, x, "torch.export", form)
        torch.testing.assert_close(program.module()(x), expected, atol=1e-5, rtol=1e-5)
    path = export(model, x, "onnx", form, tmp_path / "m.onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    got = onnxruntime.InferenceSession(str(path)).run(None, {"input0": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5, rtol=1e-5)


class Branchy(nn.Module):
    """A model whose output depends on a branch on its input data."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = structlayers.create("acdc", 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x)
        return y if y.sum() > 0 else y - 20


def test_onnx_export_of_a_data_dependent_branch_warns(tmp_path: Path) -> None:
    with pytest.warns(torch.jit.TracerWarning, match="Converting a tensor to a Python boolean"):
        export(Branchy(), torch.randn(2, 8), "onnx", "dense-dct", tmp_path / "b.onnx")


def test_export_of_plugins_alone_warns_nothing(tmp_path: Path) -> None:
    model = nn.Sequential(structlayers.create("acdc", 8, 8, depth=2), nn.ReLU(), structlayers.create("monarch", 8, 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export(model, torch.randn(3, 2, 8), "onnx", "dense-dct", tmp_path / "m.onnx")
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]


def test_collapse_and_export_keep_a_shared_plugin_shared() -> None:
    layer = structlayers.create("acdc", 8, 8)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    x = torch.randn(3, 8)
    dense_first = lambda _layer, _rows, form: 0.0 if form == "dense" else 1.0
    collapsed, report = structlayers.collapse(model, x, cost=dense_first)
    assert isinstance(collapsed[0], nn.Linear) and collapsed[0] is collapsed[2]
    assert report.choices[0].rows == 6, "both uses of the layer are counted"
    ready = exportable(model)
    assert ready[0] is ready[2]
    with torch.no_grad():
        torch.testing.assert_close(collapsed(x), model(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ready(x), model(x), atol=1e-5, rtol=1e-5)


def test_torchscript_is_refused_clearly_and_trace_points_to_the_export_form() -> None:
    layer = structlayers.create("acdc", 8, 8).eval()
    x = torch.randn(3, 8)
    with pytest.raises(NotImplementedError, match="torch.jit.script does not support layer 'acdc'"):
        torch.jit.script(layer)
    with pytest.raises(RuntimeError, match="torch.jit.trace cannot record layer 'acdc'.*structlayers.exportable"):
        torch.jit.trace(layer, x)
    traced = torch.jit.trace(exportable(nn.Sequential(layer)), x)
    x5 = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(traced(x5), layer(x5), atol=1e-5, rtol=1e-5)
    monarch = structlayers.create("monarch", 8, 8).eval()
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.trace(monarch, x)(x5), monarch(x5))


@pytest.mark.parametrize(("value", "message"), [
    (float("inf"), "layer option 'sigma': expected a finite number"),
    ("a", "layer option 'sigma': expected a number, got 'a'"),
])
def test_create_types_its_options(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        structlayers.create("acdc", 8, 8, sigma=value)
