"""Built-in models: architecture sizes, shapes and agreement of count() with FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import structlayers
from structlayers.lab.models import MODELS, build_model, example_input


def flop_counter(model: torch.nn.Module, x: torch.Tensor) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def test_resnet18_matches_the_reference_architecture() -> None:
    model = build_model("resnet18")
    # kuangliu/pytorch-cifar's ResNet18: 11,173,962 parameters, 0.56 GMACs per 32x32 image.
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    report = structlayers.count(model, x[:1])
    assert report.total_params == 11_173_962
    assert report.total_matmul_flops == flop_counter(model, x[:1]) == 2 * 555_422_720


def test_wrn_28_10_size() -> None:
    model = build_model("wrn-28-10")
    # Zagoruyko & Komodakis report 36.5M parameters for WRN-28-10.
    assert sum(p.numel() for p in model.parameters()) == 36_479_194
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build_model("wrn-28-10").__class__(depth=27)


@pytest.mark.parametrize("name", ["mnist-mlp", "mnist-stack", "mnist-stack-linear"])
def test_mnist_models(name: str) -> None:
    kwargs = {"depth": 3} if MODELS[name].structured else {}
    model = build_model(name, **kwargs)
    x = example_input(name, 4) + torch.randn(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    report = structlayers.count(model, x[:1])
    assert report.total_params == sum(p.numel() for p in model.parameters())
    if name == "mnist-mlp":
        assert report.total_matmul_flops == flop_counter(model, x[:1]) == 2 * (784 * 64 + 64 * 10)


def test_mnist_stack_has_no_dense_layer() -> None:
    model = build_model("mnist-stack", factor="acdc", depth=32)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert model.stack.size == 784 and model.stack.depth == 32
    assert sum(p.numel() for p in model.parameters()) == 32 * (2 * 784 + 784)


def test_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown model 'vgg'.*resnet18"):
        build_model("vgg")
