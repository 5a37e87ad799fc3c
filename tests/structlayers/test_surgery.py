"""structlayers.replace: selection, wrappers' exactness, fitted initialisation, reports, collapse."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import structlayers
from structlayers.cli import main
from structlayers.lab.models import build_model
from structlayers.registry import resolve
from structlayers.surgery import (
    FitOptions,
    PointwiseConv,
    SeparableConv,
    UnsupportedModuleError,
    replace,
    separable_factors,
)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, bias=False))
        self.down = nn.Conv2d(16, 32, 1, stride=2, bias=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(self.block(self.stem(x))))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_replace_toy_keeps_shapes_and_reports_parameters() -> None:
    torch.manual_seed(0)
    model, x = Toy(), torch.randn(2, 3, 8, 8)
    new, report = replace(model, "stack", ["all"], factor="acdc", depth=2, example_input=x)
    assert new(x).shape == model(x).shape == (2, 10)
    assert report.names == ["stem", "block.0", "block.2", "down", "head.1", "head.3"]
    kinds = {r.name: r.kind for r in report.replaced}
    assert kinds["block.0"] == "pointwise" and kinds["block.2"] == "separable" and kinds["head.1"] == "linear"
    assert report.total_params_before == n_params(model) and report.total_params_after == n_params(new)
    assert report.total_params_after < report.total_params_before
    for r in report.replaced:
        assert r.params_after == n_params(new.get_submodule(r.name))
        assert r.flops_before and r.flops_after
    assert report.total_flops_after == structlayers.count(new, x).total_flops
    assert isinstance(model.block[0], nn.Conv2d), "replace copies the model unless inplace=True"
    assert "head.1" in report.to_text() and '"replaced"' in report.to_json()


def test_selection_by_type_glob_and_skip() -> None:
    model, x = Toy(), torch.randn(1, 3, 8, 8)
    _, by_type = replace(model, "acdc", [nn.Linear])
    assert by_type.names == ["head.1", "head.3"]
    _, by_glob = replace(model, "acdc", ["pointwise", "separable", "block.*"])
    assert by_glob.names == ["block.0", "block.2"]
    _, skipped = replace(model, "acdc", ["all"], skip_first=1, skip_last=1, example_input=x)
    assert skipped.names == ["block.0", "block.2", "down", "head.1"]
    assert [s.name for s in skipped.skipped] == ["stem", "head.3"]
    with pytest.raises(ValueError, match="no module of Toy matches"):
        replace(model, "acdc", ["nothing.*"])
    with pytest.raises(ValueError, match="unknown layer"):
        replace(model, "nope")


def test_unsupported_modules_are_named() -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 1), nn.ConvTranspose2d(8, 8, 1))
    with pytest.warns(UserWarning, match=r"0 \(Conv2d\(4->4, 3x3\)\): grouped convolution.*2 .*transposed"):
        _, report = replace(model, "acdc", ["all"])
    assert report.names == ["1"]
    with pytest.raises(UnsupportedModuleError, match="grouped convolution"):
        replace(model, "acdc", ["all"], on_unsupported="error")
    attention = nn.Sequential(nn.MultiheadAttention(8, 2))
    with pytest.warns(UserWarning, match="MultiheadAttention reads this projection"):
        replace(attention, "acdc", ["linear"])


def test_uncalled_module_is_not_replaced() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    with pytest.warns(UserWarning, match="spare.*never called"):
        _, report = replace(Unused(), "acdc", example_input=torch.randn(2, 4))
    assert report.names == ["used"]


@pytest.mark.parametrize("conv, shape", [(nn.Conv1d(6, 5, 1, stride=2), (2, 6, 9)),
                                         (nn.Conv2d(6, 5, 1, stride=2), (2, 6, 9, 7)),
                                         (nn.Conv3d(6, 5, 1, stride=(1, 2, 3)), (2, 6, 4, 5, 7)),
                                         (nn.Conv2d(6, 5, 1), (6, 4, 4))])
def test_pointwise_wrapper_equals_the_convolution(conv: nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape)
    new, report = replace(conv, "dense", init_from="fit", fit=FitOptions(steps=30, optimizer="lbfgs"))
    assert isinstance(new, PointwiseConv) and report.replaced[0].fit_error < 1e-4
    torch.testing.assert_close(new(x), conv(x), atol=1e-4, rtol=1e-4)


def test_separable_replacement_is_exact_for_a_separable_kernel() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2)
    depthwise, pointwise = torch.randn(4, 1, 3, 3), torch.randn(6, 4)
    with torch.no_grad():
        conv.weight.copy_(pointwise[:, :, None, None] * depthwise[None, :, 0])
    dw, pw = separable_factors(conv.weight)
    torch.testing.assert_close(pw[:, :, None, None] * dw[None, :, 0], conv.weight, atol=1e-5, rtol=1e-5)
    new, report = replace(conv, "dense", ["separable"], init_from="fit", fit=FitOptions(steps=30, optimizer="lbfgs"))
    assert isinstance(new, SeparableConv) and report.replaced[0].fit_error < 1e-4
    x = torch.randn(2, 4, 11, 11)
    torch.testing.assert_close(new(x), conv(x), atol=1e-4, rtol=1e-4)


def test_fitting_a_trained_layer_beats_scratch() -> None:
    torch.manual_seed(0)
    dense = nn.Linear(16, 16)
    x = torch.randn(256, 16)
    scratch, _ = replace(dense, "stack", factor="acdc", depth=4)
    fitted, report = replace(dense, "stack", init_from="fit", fit=FitOptions(steps=100), factor="acdc", depth=4)

    def err(m: nn.Module) -> float:
        with torch.no_grad():
            return float(((m(x) - dense(x)) ** 2).mean())

    assert report.replaced[0].fit_error < 0.8
    assert err(fitted) < 0.5 * err(scratch)


def test_resnet18_replacement_and_collapse_after_training() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", width=16)
    x = torch.randn(4, 3, 32, 32)
    new, report = replace(model, "stack", ["pointwise", "separable"], skip_first=1, skip_last=1,
                          example_input=x[:1], factor="acdc", depth=4)
    assert len(report.replaced) == 19 and [s.name for s in report.skipped] == ["conv1"]
    assert new(x).shape == (4, 10)
    assert report.total_params_after == n_params(new) < report.total_params_before / 5
    opt = torch.optim.SGD(new.parameters(), lr=0.05)
    for _ in range(2):
        loss = nn.functional.cross_entropy(new(x), torch.tensor([0, 1, 2, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    new.eval()
    collapsed, creport = structlayers.collapse(new, x[:1], cost="flops")
    assert creport.collapsed, "small pointwise stacks are cheaper dense"
    assert any(isinstance(m, PointwiseConv) and isinstance(m.layer, nn.Linear) for m in collapsed.modules())
    torch.testing.assert_close(collapsed.eval()(x), new(x), atol=1e-4, rtol=1e-4)
    assert torch.equal(collapsed(x).argmax(1), new(x).argmax(1))


def test_resolve_layer() -> None:
    assert resolve("acdc", 12) == ("stack", {"factor": "acdc", "depth": 12})
    assert resolve("lowrank", None, rank=4) == ("lowrank", {"rank": 4})
    with pytest.raises(ValueError, match="cannot be stacked"):
        resolve("lowrank", 3)


def test_count_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["count", "resnet18", "--replace", "acdc", "--depth", "12"]) == 0
    out = capsys.readouterr().out
    assert "layer2.0.shortcut.0" in out and "dense model: 1.11G FLOPs (1,110,845,440), agrees with" in out
    assert "FlopCounterMode on the replaced model" in out and "DIFFERS" not in out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["count", "mnist-mlp", "--replace", "acdc", "--targets", "fc1"]) == 0
    assert "fc1" in capsys.readouterr().out
