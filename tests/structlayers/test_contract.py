"""The plugin contract (structlayers.testing.check_layer) over every registered layer, the checker
catching broken plugins, and a third-party stackable plugin found through a real entry point."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import structlayers
from structlayers import registry
from structlayers.base import FlopCount, StructuredLinear, linear_flops, rows_of
from structlayers.testing import check_layer

SHAPES = [(12, 12), (10, 7), (7, 10)]

#: Option sets beyond the defaults, so that every code path of the built-in plugins is checked.
VARIANTS = [
    ("acdc", {"groups": 2}),
    ("acdc", {"inner_shuffle": "riffle", "seed": 3}),
    ("acdc", {"backend": "dense", "bias": False}),
    ("acdc", {"init": "identity", "pow2_blocks": True, "groups": 3}),
    ("afdf", {"groups": 2, "inner_shuffle": "random", "seed": 1}),
    ("afdf", {"backend": "dense"}),
    ("blockdiag", {"groups": 2, "bias": False}),
    ("lowrank", {"rank": 2}),
    ("dense", {"bias": False}),
    ("stack", {"factor": "afdf", "depth": 3, "shuffle": "random", "seed": 2}),
    ("stack", {"factor": "blockdiag", "depth": 2, "groups": 2, "shuffle": "none"}),
    ("stack", {"factor": "acdc", "depth": 3, "activation": "relu", "norm": "layernorm"}),
    ("stack", {"factor": "acdc", "depth": 2, "norm": "batchnorm"}),
    ("afdf", {"cascade": "complex", "inner_shuffle": "riffle"}),
    ("stack", {"factor": "afdf", "depth": 3, "cascade": "complex", "shuffle": "random", "seed": 2}),
    ("stack", {"factor": "afdf", "depth": 2, "cascade": "complex", "inner_shuffle": "riffle", "backend": "dense",
               "groups": 2}),
    ("monarch", {"nblocks": 3, "rank": 2}),
    ("monarch", {"nblocks": 2, "init": "project", "bias": False}),
    ("butterfly", {"increasing_stride": False, "init": "normal"}),
    ("butterfly", {"bias": False}),
    ("kronecker", {"nblocks": 2, "rank": 3}),
    ("kronecker", {"init": "project", "bias": False}),
    ("circulant", {"bias": False}),
    ("circulant", {"init": "identity"}),
    ("toeplitz", {"bias": False, "init": "identity"}),
    ("lowrank_diag", {"rank": 1, "bias": False}),
    ("stack", {"factor": "monarch", "depth": 3, "shuffle": "random", "seed": 0, "rank": 2}),
    ("stack", {"factor": "butterfly", "depth": 2, "shuffle": "random", "seed": 1}),
    ("stack", {"factor": "toeplitz", "depth": 2, "shuffle": "riffle", "bias": False}),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", sorted(structlayers.available()))
def test_every_registered_layer_meets_the_contract(name: str, shape: tuple[int, int]) -> None:
    report = check_layer(name, *shape)
    assert {"shapes", "to_dense", "params", "flops", "state_dict", "gradcheck"} <= set(report.checks)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=lambda v: str(v))
def test_option_variants_meet_the_contract(name: str, options: dict) -> None:
    check_layer(name, 12, 9, **options)


@settings(max_examples=20, deadline=None)
@given(n_in=st.integers(1, 24), n_out=st.integers(1, 24), groups=st.integers(1, 4),
       factor=st.sampled_from(["acdc", "afdf"]))
def test_contract_over_random_shapes(n_in: int, n_out: int, groups: int, factor: str) -> None:
    groups = min(groups, max(n_in, n_out))
    check_layer(factor, n_in, n_out, groups=groups, gradcheck=False)


# --- the checker catches what it claims to -------------------------------------------------------


class _Diag(StructuredLinear):
    """A square diagonal layer ``y = x d`` whose flaws are switched on per test."""

    stackable = False
    wrong_dense = False
    wrong_params = False
    wrong_flops = False

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.d = nn.Parameter(torch.randn(in_features))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.d

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        w = torch.diag(self.d.detach())
        return (w + 1 if self.wrong_dense else w), None

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        rows = rows_of(batch_shape)
        return FlopCount(elementwise=rows * self.in_features + (7 if self.wrong_flops else 0))

    def params(self) -> int:
        return self.in_features + (1 if self.wrong_params else 0)


@pytest.mark.parametrize(("flaw", "check"), [("wrong_dense", "to_dense"), ("wrong_params", "params"),
                                             ("wrong_flops", "flops")])
def test_check_layer_reports_the_broken_check(flaw: str, check: str) -> None:
    broken = type("Broken", (_Diag,), {flaw: True})
    check_layer(_Diag, 6, 6)
    with pytest.raises(AssertionError, match=f"contract check '{check}' failed"):
        check_layer(broken, 6, 6)


# --- a third-party plugin registered through a real entry point ----------------------------------

PLUGIN = '''
"""A toy third-party plugin: y = x * d + (x . u) v + b, a square diagonal-plus-rank-one factor."""
import torch
from torch import nn
from structlayers import FlopCount, StructuredLinear
from structlayers.base import rows_of


class ToyDiagRankOne(StructuredLinear):
    stackable = True

    def __init__(self, in_features, out_features, *, bias: bool = True):
        super().__init__(in_features, out_features)
        if in_features != out_features:
            raise ValueError("toy plugin: square only")
        n = in_features
        self.d = nn.Parameter(1 + 0.1 * torch.randn(n))
        self.u = nn.Parameter(torch.randn(n) / n)
        self.v = nn.Parameter(torch.randn(n) / n)
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def forward(self, x):
        y = x * self.d + (x @ self.u)[..., None] * self.v
        return y + self.bias if self.bias is not None else y

    def to_dense(self):
        w = torch.diag(self.d.detach()) + torch.outer(self.v.detach(), self.u.detach())
        return w, None if self.bias is None else self.bias.detach().clone()

    def flop_count(self, batch_shape=(1,)):
        rows, n = rows_of(batch_shape), self.in_features
        return FlopCount(matmul=2 * rows * n, elementwise=rows * (3 * n + (n if self.bias is not None else 0)))

    def params(self):
        return 3 * self.in_features + (self.in_features if self.bias is not None else 0)
'''


@pytest.fixture()
def toy_plugin(tmp_path: Path) -> Iterator[str]:
    """Install ``toydiag`` as a distribution on ``sys.path`` (a package plus its dist-info with an
    entry point in the ``structlayers.layers`` group), then remove it again."""
    (tmp_path / "sl_toyplugin").mkdir()
    (tmp_path / "sl_toyplugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "sl_toyplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sl-toyplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\ntoydiag = sl_toyplugin:ToyDiagRankOne\n")
    sys.path.insert(0, str(tmp_path))
    try:
        registry.reload_entry_points()
        yield "toydiag"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("sl_toyplugin", None)
        registry.unregister("toydiag")


def test_entry_point_plugin_meets_the_contract_and_stacks(toy_plugin: str) -> None:
    assert structlayers.available()[toy_plugin].__module__ == "sl_toyplugin"
    report = check_layer(toy_plugin, 8, 8)
    assert "stack" in report.checks
    stack = structlayers.create(toy_plugin, 8, 8, depth=3, shuffle="random", seed=0).double()
    x = torch.randn(5, 8, dtype=torch.float64)
    weight, bias = stack.to_dense()
    torch.testing.assert_close(stack(x), x @ weight.T + bias)
    collapsed, report = structlayers.collapse(nn.Sequential(stack), x, cost=lambda _l, _r, form: float(form != "dense"))
    assert report.collapsed == ["0"]
    torch.testing.assert_close(collapsed(x), stack(x))


def test_entry_point_plugin_in_replace_and_approx(toy_plugin: str, capsys: pytest.CaptureFixture[str]) -> None:
    from structlayers.cli import main
    from structlayers.lab.approx import ApproxConfig, run_approx
    from structlayers.surgery import FitOptions

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    new, report = structlayers.replace(model, toy_plugin, depth=2, example_input=torch.zeros(1, 8))
    assert report.names == ["0", "2"] and all(type(new[i]).__name__ == "Stack" for i in (0, 2))
    assert new(torch.randn(3, 8)).shape == (3, 8)
    result = run_approx(ApproxConfig(layers=toy_plugin, n=8, depths=(None, 2), seeds=(0,),
                                     fit=FitOptions("lbfgs", steps=50)), progress=False)
    errors = [row.rel_error_mean for row in result.rows()]
    assert len(errors) == 2 and all(0 <= e < 1 for e in errors)
    assert main(["approx", "--layer", toy_plugin, "--n", "8", "--depth", "2", "--seeds", "1", "--steps", "10",
                 "--no-progress"]) == 0
    assert toy_plugin in capsys.readouterr().out


def test_linear_flops_helper_matches_dense_plugin() -> None:
    layer = structlayers.create("dense", 6, 4)
    assert layer.flop_count(3) == linear_flops(3, 6, 4, True)
