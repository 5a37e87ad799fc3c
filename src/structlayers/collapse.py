"""Test-time collapse: replace each layer plugin by the cheaper of its structured form and one
dense ``nn.Linear`` holding its exact effective weight (matrix products are associative, so any
linear stack folds into one matrix).  The choice is made per layer, for the shape it will see, by
measured time on the model's device by default (FLOPs mislead: an FFT layer with fewer FLOPs than a
matmul can still be slower), falling back to FLOPs where timing is impossible."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from structlayers.base import StructuredLinear, dense_linear, rows_of
from structlayers.utils.costs import CostModel, cost_model, flop_cost
from structlayers.utils.report import format_table, human
from structlayers.utils.timing import TimingUnavailable
from structlayers.utils.tracing import record_shapes, run_example


@dataclass
class CollapseChoice:
    """What :func:`collapse` decided for one layer."""

    name: str
    layer: str
    in_features: int
    out_features: int
    rows: int
    structured_cost: float
    dense_cost: float
    chosen: str
    reason: str = ""
    #: The cost model the decision used: "flops", "measured", or "custom" (a callable).
    cost: str = "flops"
    #: Analytic FLOPs of both forms, always reported.
    structured_flops: int = 0
    dense_flops: int = 0
    #: Measured forward seconds of both forms, when the decision measured them.
    structured_seconds: float | None = None
    dense_seconds: float | None = None


@dataclass
class CollapseReport:
    choices: list[CollapseChoice] = field(default_factory=list)

    @property
    def collapsed(self) -> list[str]:
        return [c.name for c in self.choices if c.chosen == "dense"]

    def to_text(self) -> str:
        def seconds(s: float | None) -> str:
            return "-" if s is None else f"{s * 1e6:.1f} us"

        rows = [
            (c.name, c.layer, f"{c.in_features}->{c.out_features}", c.rows, human(c.structured_flops),
             human(c.dense_flops), seconds(c.structured_seconds), seconds(c.dense_seconds), c.cost,
             c.chosen + (f" ({c.reason})" if c.reason else ""))
            for c in self.choices
        ]
        return format_table(("module", "layer", "shape", "rows", "FLOPs structured", "FLOPs dense", "time structured",
                             "time dense", "by", "chosen"), rows, "lllrrrrrll")

    def to_json(self) -> str:
        return json.dumps([asdict(c) for c in self.choices], indent=2)


class _NoDenseForm(Exception):
    """A nonlinear layer: it stays structured, so its forms are not measured."""


def _plugins(model: nn.Module) -> dict[str, StructuredLinear]:
    """Outermost plugins only: factors inside a stack belong to the stack."""
    found: dict[str, StructuredLinear] = {}
    for name, module in model.named_modules():
        if isinstance(module, StructuredLinear) and not any(p == "" or name.startswith(p + ".") for p in found):
            found[name] = module
    return found


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    if not name:
        return new
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    return model


def _replace_plugin(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Install ``new`` at ``name`` and at every other name of the module there (a plugin used in
    several places of the model stays one module, shared as before)."""
    if not name:
        return new
    old = model.get_submodule(name)
    names = [n for n, m in model.named_modules(remove_duplicate=False) if m is old]
    for other in names:
        model = _set_submodule(model, other, new)
    return model


def collapse(
    model: nn.Module,
    example_input: Any = None,
    *,
    batch_shape: tuple[int, ...] | int = (1,),
    cost: CostModel | str = "measured",
    inplace: bool = False,
) -> tuple[nn.Module, CollapseReport]:
    """Replace every layer plugin in ``model`` by its cheaper form and report the choices.

    The number of vectors each layer sees is read by running ``example_input`` through the model
    (so pointwise convolutions count every spatial position); without it every layer is assumed to
    see ``batch_shape``.  Nonlinear plugins (stacks with activations) stay structured.

    ``cost`` is ``"measured"`` (the default: both forms timed on the layer's device for the rows it
    sees, once per configuration and machine, cached on disk; see :mod:`structlayers.utils.costs`; where
    timing is impossible, as on the ``meta`` device, that layer is decided by FLOPs and the report
    says so), ``"flops"`` (analytic FLOPs of each form) or any ``cost(layer, rows, form)`` callable.
    The report holds both forms' FLOPs, their measured times when measured, and which cost decided.
    """
    cost_name = cost if isinstance(cost, str) else "custom"
    cost = cost_model(cost)
    model = model if inplace else copy.deepcopy(model)
    plugins = _plugins(model)
    rows_seen: dict[str, int] = {}
    if example_input is not None:
        with record_shapes(dict(plugins)) as shapes:
            run_example(model, example_input)
        rows_seen = {n: sum(rows_of(s[:-1]) for s in shapes[n].inputs) for n in plugins if shapes[n].calls}
    report = CollapseReport()
    for name, layer in plugins.items():
        rows = rows_seen.get(name, rows_of(batch_shape))
        used, reason = cost_name, ""
        try:
            if not layer.is_linear:  # no dense form to time; FLOPs for the report only
                raise _NoDenseForm
            structured, dense = cost(layer, rows, "structured"), cost(layer, rows, "dense")
        except (TimingUnavailable, _NoDenseForm) as err:
            used, reason = "flops", f"timing impossible: {err}" if isinstance(err, TimingUnavailable) else ""
            structured, dense = flop_cost(layer, rows, "structured"), flop_cost(layer, rows, "dense")
        choice = CollapseChoice(name or "(model)", layer.name, layer.in_features, layer.out_features, rows,
                                structured, dense, "structured", reason, used,
                                int(flop_cost(layer, rows, "structured")), int(flop_cost(layer, rows, "dense")))
        if used == "measured":
            choice.structured_seconds, choice.dense_seconds = structured, dense
        if not layer.is_linear:
            choice.reason = "nonlinear" + (f"; {reason}" if reason else "")
        elif dense < structured:
            choice.chosen = "dense"
            model = _replace_plugin(model, name, dense_linear(layer))
        report.choices.append(choice)
    return model, report
