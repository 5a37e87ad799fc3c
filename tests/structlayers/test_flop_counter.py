"""FlopCounterMode, Lightning's measure_flops and structlayers.count agree on every registered layer
(both DCT/DFT backends, forward and backward), through the analytic marker operators."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import structlayers
from structlayers.surgery import PointwiseConv

BACKENDS = {"acdc": ("fft", "dense"), "afdf": ("fft", "dense"), "stack": ("fft", "dense")}


def configurations() -> list[tuple[str, dict]]:
    """Every registered layer (third-party ones included) with each backend it has."""
    out = []
    for name in sorted(structlayers.available()):
        backends = BACKENDS.get(name, (None,))
        for backend in backends:
            out.append((name, {} if backend is None else {"backend": backend}))
    return out


def counted(fn) -> tuple[int, dict]:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops(), {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize(("name", "options"), configurations(), ids=lambda v: str(v))
def test_flop_counter_measure_flops_and_count_agree(name: str, options: dict) -> None:
    from lightning.fabric.utilities.throughput import measure_flops

    layer = structlayers.create(name, 24, 20, **options)
    x = torch.randn(2, 3, 24)
    analytic = layer.flops((2, 3))
    with torch.no_grad():
        forward, _ = counted(lambda: layer(x))
    assert forward == analytic == structlayers.count(nn.Sequential(layer), x).total_counter_flops
    assert measure_flops(layer, lambda: layer(x)) == analytic
    # Backward: the parameter gradients only (x needs none), then both, as for nn.Linear.
    param_only = analytic + layer.backward_flop_count((2, 3), input_grad=False).total
    assert measure_flops(layer, lambda: layer(x), lambda y: y.sum()) == param_only
    both, _ = counted(lambda: layer(x.clone().requires_grad_()).sum().backward())
    assert both == analytic + layer.backward_flop_count((2, 3)).total == 3 * analytic


def test_the_markers_name_each_kind_and_complex_matmuls_count_four_real_ones() -> None:
    afdf = structlayers.create("afdf", 16, 16, backend="dense", bias=False)
    with torch.no_grad():
        _, by_op = counted(lambda: afdf(torch.randn(5, 16)))
    # Two complex 16 x 16 DFT matmuls per row: 4 real multiply-adds (8 FLOPs) per complex one.
    assert by_op["structlayers.matmul_flops"] == 2 * 5 * 8 * 16 * 16
    assert by_op["structlayers.elementwise_flops"] == 5 * 8 * 16
    acdc = structlayers.create("acdc", 16, 16)
    with torch.no_grad():
        _, by_op = counted(lambda: acdc(torch.randn(5, 16)))
    assert set(by_op) == {"structlayers.fft_flops", "structlayers.elementwise_flops"}


def test_gradients_are_unchanged_under_the_counter() -> None:
    layer = structlayers.create("stack", 12, 12, depth=3, norm="batchnorm", factor="afdf")
    x = torch.randn(4, 12, requires_grad=True)
    layer(x).square().sum().backward()
    expected = [x.grad.clone(), *(p.grad.clone() for p in layer.parameters())]
    layer.zero_grad()
    x.grad = None
    with FlopCounterMode(display=False):
        layer(x).square().sum().backward()
    for got, want in zip([x.grad, *(p.grad for p in layer.parameters())], expected):
        torch.testing.assert_close(got, want)


def test_a_mixed_model_matches_count() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          PointwiseConv(structlayers.create("acdc", 8, 16, depth=2), 8, 16), nn.Flatten(),
                          nn.Linear(16 * 6 * 6, 10))
    x = torch.randn(2, 3, 8, 8)
    report = structlayers.count(model, x)
    with torch.no_grad():
        seen, _ = counted(lambda: model.eval()(x))
    assert seen == report.total_counter_flops
    assert report.total_counter_flops < report.total_flops  # bias additions and norms are not in FlopCounterMode


def test_layers_built_on_the_meta_device_are_counted() -> None:
    from lightning.fabric.utilities.throughput import measure_flops

    with torch.device("meta"):
        model = nn.Sequential(structlayers.create("afdf", 32, 32, depth=3, inner_shuffle="random"),
                              structlayers.create("acdc", 32, 10))
        x = torch.randn(8, 32)
    assert {b.device.type for b in model.buffers()} == {"meta"}
    assert measure_flops(model, lambda: model(x)) == model[0].flops(8) + model[1].flops(8)


def test_count_cli_states_what_is_analytic(capsys: pytest.CaptureFixture[str]) -> None:
    from structlayers.cli import main

    assert main(["count", "mnist-stack"]) == 0
    out = capsys.readouterr().out
    assert "Every figure in the table is analytic" in out
    assert "FlopCounterMode on the model: 1.46M FLOPs (1,456,176), agrees with" in out
