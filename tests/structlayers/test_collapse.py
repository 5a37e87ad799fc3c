import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import structlayers


class Head(nn.Module):
    """A small model mixing plugins, a plain Linear and a nonlinear stack."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.big = structlayers.create("stack", n, n, depth=4, init="uniform")
        self.small = structlayers.create("stack", 8, 8, depth=6, init="uniform")
        self.proj = nn.Linear(n, 8)
        self.nonlinear = structlayers.create("stack", 8, 8, depth=2, activation="relu")
        self.out = structlayers.create("acdc", 8, 3, init="uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.nonlinear(self.small(self.proj(torch.relu(self.big(x))))))


def test_collapse_picks_the_cheaper_form_and_matches() -> None:
    model = Head(256).double()
    x = torch.randn(4, 256, dtype=torch.float64)
    collapsed, report = structlayers.collapse(model, x, cost="flops")
    chosen = {c.name: c.chosen for c in report.choices}
    # 4 ACDC factors at N=256 cost far less than a 256x256 matmul; 6 factors at N=8 cost more.
    assert chosen == {"big": "structured", "small": "dense", "nonlinear": "structured", "out": "dense"}
    assert isinstance(collapsed.small, nn.Linear) and isinstance(collapsed.big, structlayers.StructuredLinear)
    assert isinstance(model.small, structlayers.StructuredLinear), "collapse must not modify the original"
    torch.testing.assert_close(collapsed(x), model(x), rtol=1e-4, atol=1e-10)
    assert "nonlinear" in report.to_text()


@given(n=st.integers(2, 40), depth=st.integers(1, 6), rows=st.integers(1, 300))
def test_collapse_equals_forward_and_never_costs_more(n: int, depth: int, rows: int) -> None:
    layer = structlayers.create("stack", n, n, depth=depth, init="uniform", shuffle="random", seed=n)
    x = torch.randn(rows, n)
    collapsed, report = structlayers.collapse(nn.Sequential(layer), x, cost="flops")
    (choice,) = report.choices
    assert choice.rows == rows
    assert min(choice.structured_cost, choice.dense_cost) == (
        choice.dense_cost if choice.chosen == "dense" else choice.structured_cost
    )
    scale = layer(x).abs().max().item() + 1e-6
    torch.testing.assert_close(collapsed(x) / scale, layer(x) / scale, rtol=1e-4, atol=1e-4)


def test_collapse_uses_every_vector_seen() -> None:
    layer = structlayers.create("acdc", 64, 64)
    x = torch.randn(2, 5, 7, 64)
    _, report = structlayers.collapse(nn.Sequential(layer), x, cost="flops")
    assert report.choices[0].rows == 70
    _, report = structlayers.collapse(nn.Sequential(layer), batch_shape=(3, 4), cost="flops")
    assert report.choices[0].rows == 12


def test_collapsed_model_on_the_original_device_and_dtype() -> None:
    model = nn.Sequential(structlayers.create("stack", 8, 8, depth=8)).double()
    collapsed, _ = structlayers.collapse(model, torch.randn(2, 8, dtype=torch.float64), cost="flops")
    assert collapsed[0].weight.dtype == torch.float64


def test_collapse_report_json_round_trip() -> None:
    import json

    _, report = structlayers.collapse(nn.Sequential(structlayers.create("acdc", 8, 8)), batch_shape=(1,),
                                    cost="flops")
    data = json.loads(report.to_json())
    assert data[0]["layer"] == "acdc" and data[0]["chosen"] in ("dense", "structured")


def test_collapse_inplace_on_a_bare_plugin_returns_linear() -> None:
    layer = structlayers.create("stack", 4, 4, depth=8)
    collapsed, report = structlayers.collapse(layer, batch_shape=(1,), cost="flops")
    assert isinstance(collapsed, nn.Linear) and report.collapsed == ["(model)"]
    with pytest.raises(ValueError):
        structlayers.create("stack", 4, 4, depth=8, activation="relu").to_dense()


def test_measured_cost_model_and_bad_cost() -> None:
    model = nn.Sequential(structlayers.create("stack", 16, 16, depth=2, init="uniform"))
    x = torch.randn(4, 16)
    collapsed, report = structlayers.collapse(model, x, cost="measured")
    assert report.choices[0].structured_cost > 0 and report.choices[0].dense_cost > 0
    torch.testing.assert_close(collapsed(x), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unknown collapse cost"):
        structlayers.collapse(model, x, cost="cheapest")
