"""Exact accounting; the last three tests each catch one counting mistake of the research log."""

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import structlayers
from structlayers.transforms.dct import dct_flops


def counter_flops(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


class PerPixel(nn.Module):
    """Applies a plugin to every pixel of an NCHW tensor (a pointwise convolution)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.movedim(1, -1)).movedim(-1, 1)


class ConvNet(nn.Module):
    def __init__(self, pointwise: nn.Module) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))  # a parameter held by a non-leaf module
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.depthwise = nn.Conv2d(16, 16, 3, stride=2, groups=16, bias=False)
        self.pointwise = pointwise
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pointwise(self.depthwise(torch.relu(self.bn(self.conv(x)))))
        return self.fc(x.mean((2, 3))) * self.scale


@pytest.mark.parametrize(
    "name,options",
    [("dense", {}), ("lowrank", {"rank": 5}), ("blockdiag", {"groups": 4}), ("acdc", {"backend": "dense"}),
     ("stack", {"depth": 5, "backend": "dense"}), ("stack", {"depth": 3, "factor": "blockdiag", "groups": 2})],
)
def test_plugin_flops_agree_with_flop_counter_mode(name: str, options: dict) -> None:
    model = nn.Sequential(structlayers.create(name, 48, 40, **options))
    x = torch.randn(7, 3, 48)
    report = structlayers.count(model, x)
    assert report.total_counter_flops == counter_flops(model, x) == report.total_flops == model[0].flops((7, 3))


def test_dense_conv_model_agrees_with_flop_counter_mode() -> None:
    model = ConvNet(nn.Conv2d(16, 32, 1))
    model.fc = nn.Linear(32, 10)
    x = torch.randn(2, 3, 16, 16)
    report = structlayers.count(model, x)
    assert report.total_matmul_flops == report.total_counter_flops == counter_flops(model, x)


def test_fft_forms_hand_derived() -> None:
    rows, n = 10, 64
    fft = int(2.5 * n * math.log2(n)) + 3 * n  # one real-FFT DCT of length 64
    acdc = structlayers.create("acdc", n, n)
    assert acdc.flop_count(rows).fft == 2 * rows * fft
    assert acdc.flop_count(rows).elementwise == rows * (2 * n + n)  # A, D and the bias
    assert acdc.flops(rows) == rows * (2 * fft + 3 * n)
    afdf = structlayers.create("afdf", n, n, bias=False)
    # complex FFT 5 n log2 n, twice; real*complex (2) and complex*complex (6) scalings.
    assert afdf.flops(rows) == rows * (2 * 5 * n * 6 + 8 * n)
    grouped = structlayers.create("acdc", n, n, groups=4, bias=False)
    assert grouped.flops(rows) == 2 * dct_flops(16, rows * 4) + 2 * rows * n


def test_report_formats() -> None:
    model = ConvNet(PerPixel(structlayers.create("stack", 16, 16, depth=2)))
    report = structlayers.count(model, torch.randn(1, 3, 8, 8))
    text = report.to_text()
    assert "pointwise.layer" in text and "total" in text
    data = json.loads(report.to_json())
    assert data["total_params"] == report.total_params
    assert report.by_prefix("pointwise")[0] == model.pointwise.layer.params()


def test_stack_is_counted_with_every_factor() -> None:
    """Log mistake 1: a stack of K factors counted as one factor."""
    x = torch.randn(4, 64)
    one = structlayers.count(nn.Sequential(structlayers.create("acdc", 64, 64)), x)
    twelve = structlayers.count(nn.Sequential(structlayers.create("stack", 64, 64, depth=12)), x)
    assert twelve.total_flops == 12 * one.total_flops
    assert twelve.total_params == 12 * one.total_params


def test_pointwise_layers_count_every_spatial_position() -> None:
    """Log mistake 2: a structured 1x1 convolution counted once instead of once per pixel."""
    model = ConvNet(PerPixel(structlayers.create("stack", 16, 16, depth=4)))
    small = structlayers.count(model, torch.randn(1, 3, 8, 8)).by_prefix("pointwise")[1]
    large = structlayers.count(model, torch.randn(1, 3, 16, 16)).by_prefix("pointwise")[1]
    batch = structlayers.count(model, torch.randn(3, 3, 16, 16)).by_prefix("pointwise")[1]
    # 3x3 stride-2 valid conv: 8x8 -> 3x3 and 16x16 -> 7x7 positions.
    per_vector = model.pointwise.layer.flops(1)
    assert small == 9 * per_vector and large == 49 * per_vector and batch == 3 * large


def test_no_parameter_is_silently_dropped() -> None:
    """Log mistake 3: a recursive count that skipped some layers."""
    model = ConvNet(PerPixel(structlayers.create("stack", 16, 16, depth=3, factor="afdf")))
    report = structlayers.count(model, torch.randn(1, 3, 8, 8))
    assert report.total_params == sum(p.numel() for p in model.parameters())
    names = {r.name for r in report.rows}
    assert {"(model)", "conv", "bn", "depthwise", "pointwise.layer", "fc"} <= names


def test_shared_module_counts_every_call() -> None:
    shared = structlayers.create("acdc", 32, 32)

    class Siamese(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = shared

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.enc(x) + self.enc(2 * x)

    report = structlayers.count(Siamese(), torch.randn(5, 32))
    (row,) = [r for r in report.rows if r.name == "enc"]
    assert row.calls == 2 and row.flops == 2 * shared.flops(5)
