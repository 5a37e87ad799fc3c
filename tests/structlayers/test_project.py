"""Closed-form projections (``project_``) of dense weights onto each family, and
``replace(init_from="scratch" | "project" | "fit")`` / ``structlayers replace --init``."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import structlayers
from structlayers.layers.projection import truncated_factors


def weight_error(layer: structlayers.StructuredLinear, weight: torch.Tensor) -> float:
    w, _ = layer.to_dense()
    return float(torch.linalg.norm(w.double() - weight.double()) / torch.linalg.norm(weight.double()))


def test_dense_copies_and_lowrank_is_the_truncated_svd() -> None:
    w, b = torch.randn(9, 13, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    dense = structlayers.create("dense", 13, 9).double()
    dense.project_(w, b)
    assert weight_error(dense, w) == 0 and torch.equal(dense.bias, b)
    lowrank = structlayers.create("lowrank", 13, 9, rank=3).double()
    lowrank.project_(w, b)
    s = torch.linalg.svdvals(w)
    assert weight_error(lowrank, w) == pytest.approx(float(s[3:].norm() / s.norm()), rel=1e-9)  # Eckart-Young
    u, v = truncated_factors(w.T, 9)
    torch.testing.assert_close(u @ v, w.T)


@given(groups=st.integers(1, 4), seed=st.integers(0, 100))
def test_blockdiag_recovers_block_diagonal_targets(groups: int, seed: int) -> None:
    torch.manual_seed(seed)
    source = structlayers.create("blockdiag", 12, 12, groups=groups).double()
    w, b = source.to_dense()
    layer = structlayers.create("blockdiag", 12, 12, groups=groups).double()
    layer.project_(w, b)
    assert weight_error(layer, w) < 1e-12


@pytest.mark.parametrize(("name", "options"), [("acdc", {}), ("acdc", {"groups": 2, "inner_shuffle": "riffle"}),
                                               ("afdf", {}), ("afdf", {"groups": 3, "inner_shuffle": "random"})])
def test_diagonal_transforms_recover_targets_of_their_family(name: str, options: dict) -> None:
    source = structlayers.create(name, 12, 12, init="uniform", seed=4, **options).double()
    w, b = source.to_dense()
    layer = structlayers.create(name, 12, 12, seed=4, **options).double()
    layer.project_(w, b)
    assert weight_error(layer, w) < 1e-4  # alternating least squares: each half-step exact, converged to 1e-4
    torch.testing.assert_close(layer.to_dense()[1], b)


@pytest.mark.parametrize(("name", "options"), [("acdc", {}), ("afdf", {}), ("blockdiag", {"groups": 2}),
                                               ("stack", {"depth": 3}), ("stack", {"depth": 3, "factor": "afdf"})])
def test_projection_beats_the_zero_map_on_any_target(name: str, options: dict) -> None:
    torch.manual_seed(1)
    w = torch.randn(10, 14, dtype=torch.float64)
    layer = structlayers.create(name, 14, 10, **options).double()
    layer.project_(w, None)
    assert weight_error(layer, w) < 1.0


def test_stack_projection_never_does_worse_than_its_first_update() -> None:
    """Without shuffles the first update is the one-factor projection, and updates only lower the error."""
    torch.manual_seed(2)
    w = torch.randn(16, 16, dtype=torch.float64) + 3 * torch.eye(16, dtype=torch.float64)
    one = structlayers.create("stack", 16, 16, depth=1, shuffle="none").double()
    one.project_(w, None)
    deep = structlayers.create("stack", 16, 16, depth=4, shuffle="none").double()
    deep.project_(w, None)
    assert weight_error(deep, w) <= weight_error(one, w) + 1e-9


def _random_member(name: str, n_in: int, n_out: int, draw: int, **options: object) -> torch.Tensor:
    """The dense weight of a member of ``name``'s family with generic parameters (1 + N(0, 0.5^2)
    entries, so that products of factors neither vanish nor blow up)."""
    torch.manual_seed(draw)
    source = structlayers.create(name, n_in, n_out, bias=False, **options).double()
    with torch.no_grad():
        for p in source.parameters():
            p.copy_(1 + 0.5 * torch.randn_like(p))
    return source.to_dense()[0]


@pytest.mark.parametrize(("name", "n_in", "n_out", "options"), [
    ("monarch", 24, 16, {"nblocks": 5}),               # 5 divides neither size: whole rows / columns padded
    ("monarch", 10, 11, {"nblocks": 3, "rank": 2}),
    ("acdc", 24, 16, {}),                              # out < in: unobserved columns of the square map
    ("afdf", 24, 16, {}),
    ("acdc", 16, 24, {}),
])
def test_padded_projections_recover_members_of_their_family(name: str, n_in: int, n_out: int, options: dict) -> None:
    w = _random_member(name, n_in, n_out, 0, **options)
    layer = structlayers.create(name, n_in, n_out, bias=False, **options).double()
    layer.project_(w, None)
    assert weight_error(layer, w) < 1e-6  # alternating least squares with imputation, converged to ~1e-7


def test_kronecker_refuses_to_project_padded_shapes_but_starts_from_them() -> None:
    """With nblocks dividing neither size the nearest sum has no closed form: refused (surgery then
    fits), while ``init="project"`` still starts from the zero-padded closed form."""
    layer = structlayers.create("kronecker", 10, 11, nblocks=3, rank=2, bias=False).double()
    with pytest.raises(NotImplementedError, match="divides neither"):
        layer.project_(torch.randn(11, 10, dtype=torch.float64), None)
    w = _random_member("kronecker", 12, 12, 0, nblocks=3, rank=2)
    square = structlayers.create("kronecker", 12, 12, nblocks=3, rank=2, bias=False).double()
    square.project_(w, None)
    assert weight_error(square, w) < 1e-12
    assert structlayers.create("kronecker", 10, 11, nblocks=3, rank=2, init="project").params() > 0


@pytest.mark.parametrize("depth", [2, 3])
def test_stack_projection_recovers_a_member_of_its_family(depth: int) -> None:
    w = _random_member("stack", 8, 8, 0, factor="acdc", depth=depth, shuffle="random", seed=0)
    layer = structlayers.create("stack", 8, 8, factor="acdc", depth=depth, shuffle="random", seed=0,
                                bias=False).double()
    layer.project_(w, None, refine_steps=0)
    start = weight_error(layer, w)
    layer.project_(w, None)
    assert weight_error(layer, w) < 1e-4 < start  # the closed-form start alone does not recover it


@pytest.mark.parametrize(("n_in", "n_out", "increasing"), [(16, 16, True), (16, 16, False), (12, 16, True),
                                                           (16, 10, False)])
def test_butterfly_projection_recovers_members_exactly(n_in: int, n_out: int, increasing: bool) -> None:
    torch.manual_seed(0)
    w = structlayers.create("butterfly", n_in, n_out, bias=False, increasing_stride=increasing,
                            init="normal").double().to_dense()[0]
    layer = structlayers.create("butterfly", n_in, n_out, bias=False, increasing_stride=increasing).double()
    layer.project_(w, None, refine_steps=0)  # the hierarchical factorisation alone
    assert weight_error(layer, w) < 1e-12


def test_butterfly_projection_refines_on_other_targets() -> None:
    torch.manual_seed(1)
    w = torch.randn(16, 16, dtype=torch.float64)
    layer = structlayers.create("butterfly", 16, 16, bias=False).double()
    layer.project_(w, None, refine_steps=0)
    start = weight_error(layer, w)
    layer.project_(w, None, refine_steps=200)
    assert weight_error(layer, w) < start < 1.0


def test_nonlinear_stack_has_no_projection() -> None:
    layer = structlayers.create("stack", 8, 8, depth=2, activation="relu")
    with pytest.raises(NotImplementedError):
        layer.project_(torch.randn(8, 8), None)


def test_replace_init_modes_order_the_errors() -> None:
    torch.manual_seed(0)
    # Without biases: the fit's objective then is the weight error that the report measures (with
    # them, it trades weight error for bias error once the projection is already near the optimum).
    model = nn.Sequential(nn.Linear(20, 16, bias=False), nn.ReLU(), nn.Linear(16, 4, bias=False))
    errors = {}
    for init in ("scratch", "project", "fit"):
        _, report = structlayers.replace(model, "acdc", depth=2, init_from=init,
                                         fit=structlayers.surgery.FitOptions(steps=30, optimizer="lbfgs"))
        errors[init] = [r.fit_error for r in report.replaced]
        assert {r.init for r in report.replaced} == {"scratch" if init == "scratch" else
                                                       {"project": "projected", "fit": "projected+fitted"}[init]}
    assert errors["scratch"] == [None, None]
    assert all(f <= p + 1e-6 for f, p in zip(errors["fit"], errors["project"]))
    with pytest.raises(ValueError, match="init_from"):
        structlayers.replace(model, "acdc", init_from="warm")


def test_project_without_a_projection_warns_and_keeps_the_initialisation() -> None:
    model = nn.Sequential(nn.Linear(8, 8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="nonlinear"):
            structlayers.replace(model, "stack", depth=2, activation="relu", init_from="project")
    assert not caught


def test_replace_cli_writes_state_dict_report_and_accuracies(tmp_path, capsys) -> None:
    from structlayers.cli import main
    from structlayers.lab.models import build_model

    weights = tmp_path / "mlp.pt"
    torch.manual_seed(0)
    torch.save(build_model("mnist-mlp").state_dict(), weights)
    out, report = tmp_path / "replaced.pt", tmp_path / "report.json"
    assert main(["replace", "mnist-mlp", "--weights", str(weights), "--replace", "lowrank", "-o", "rank=8",
                 "--init", "project", "--evaluate", "mnist", "--out", str(out), "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["init"] == "project" and {r["init"] for r in data["report"]["replaced"]} == {"projected"}
    assert 0 <= data["accuracy_after"] <= 1 and 0 <= data["accuracy_before"] <= 1
    state = torch.load(out)
    assert "fc1.U" in state and "fc2.V" in state
    assert "right after surgery" in capsys.readouterr().out
    assert main(["replace", "mnist-mlp"]) == 2
