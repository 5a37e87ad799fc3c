"""Exact parameter and FLOP accounting of a model on an example input.

Rules (each guards against a classic counting mistake):
- a layer plugin is counted as a whole, analytically: a stack counts every factor;
- FLOPs are counted for every call and every vector a layer sees, so a pointwise convolution or
  a plugin applied per pixel counts every spatial position, and a shared module counts each call;
- every parameter of the model is attributed to exactly one row (modules with parameters of their
  own that are not leaves get a row too), so the total always equals the model's parameter count.
Convolutions and ``nn.Linear`` count ``2 * MACs`` as matmul FLOPs plus their bias additions as
elementwise FLOPs; collapsed forms are plain ``nn.Linear``.

Every figure is analytic.  What :class:`torch.utils.flop_counter.FlopCounterMode` (and Lightning's
``measure_flops``) reports for the same forward pass is :attr:`CountReport.total_counter_flops`: the
matmul FLOPs of standard modules (it has no formulas for their bias additions or norms) plus the full
analytic count of every layer plugin, which reports itself to it (:mod:`structlayers.flops`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from structlayers.base import FlopCount, StructuredLinear, count_params, rows_of
from structlayers.utils.report import format_table, human
from structlayers.utils.tracing import CallShapes, record_shapes, run_example

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class CountRow:
    name: str
    type: str
    params: int
    flops: int
    matmul_flops: int
    calls: int
    #: A layer plugin, whose whole analytic count FlopCounterMode sees (it sees only the matmul
    #: FLOPs of other modules).
    plugin: bool = False

    @property
    def counter_flops(self) -> int:
        """What FlopCounterMode sees of this row."""
        return self.flops if self.plugin else self.matmul_flops


@dataclass
class CountReport:
    rows: list[CountRow] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def total_matmul_flops(self) -> int:
        return sum(r.matmul_flops for r in self.rows)

    @property
    def total_counter_flops(self) -> int:
        """The FLOPs FlopCounterMode reports for the same forward pass (see the module docs)."""
        return sum(r.counter_flops for r in self.rows)

    def by_prefix(self, prefix: str) -> tuple[int, int]:
        """``(params, flops)`` of the rows under module ``prefix``."""
        sel = [r for r in self.rows if r.name == prefix or r.name.startswith(prefix + ".")]
        return sum(r.params for r in sel), sum(r.flops for r in sel)

    def to_text(self, skip_empty: bool = True) -> str:
        rows = [
            (r.name, r.type, human(r.params), human(r.flops), human(r.matmul_flops), r.calls)
            for r in self.rows
            if not skip_empty or r.params or r.flops
        ]
        rows.append(("total", "", human(self.total_params), human(self.total_flops), human(self.total_matmul_flops),
                     ""))
        return format_table(("module", "type", "params", "FLOPs", "matmul FLOPs", "calls"), rows, "llrrrr")

    def to_json(self) -> str:
        return json.dumps(
            {
                "total_params": self.total_params,
                "total_flops": self.total_flops,
                "total_matmul_flops": self.total_matmul_flops,
            "total_counter_flops": self.total_counter_flops,
                "rows": [asdict(r) for r in self.rows],
            },
            indent=2,
        )


def _module_flops(module: nn.Module, shapes: CallShapes) -> FlopCount:
    total = FlopCount()
    for x_shape, y_shape in zip(shapes.inputs, shapes.outputs):
        if isinstance(module, StructuredLinear):
            total = total + module.flop_count(rows_of(x_shape[:-1]))
        elif isinstance(module, nn.Linear):
            rows = rows_of(x_shape[:-1])
            total = total + FlopCount(
                matmul=2 * rows * module.in_features * module.out_features,
                elementwise=rows * module.out_features if module.bias is not None else 0,
            )
        elif isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
            outputs = math.prod(y_shape)
            macs = outputs * (module.in_channels // module.groups) * math.prod(module.kernel_size)
            total = total + FlopCount(matmul=2 * macs, elementwise=outputs if module.bias is not None else 0)
        elif isinstance(module, _NORMS):
            total = total + FlopCount(elementwise=2 * math.prod(y_shape))
    return total


def _counted_units(model: nn.Module) -> dict[str, nn.Module]:
    """Plugins (as wholes), leaves, and non-leaf modules holding parameters of their own."""
    units: dict[str, nn.Module] = {}
    plugin_prefixes: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(p + ".") or p == "" for p in plugin_prefixes):
            continue
        if isinstance(module, StructuredLinear):
            units[name] = module
            plugin_prefixes.append(name)
        elif not any(True for _ in module.children()) or count_params(module, recurse=False):
            units[name] = module
    return units


def count(model: nn.Module, example_input: Any) -> CountReport:
    """Per-module parameters and FLOPs of ``model`` on ``example_input`` (see the module docs)."""
    units = _counted_units(model)
    with record_shapes(units) as shapes:
        run_example(model, example_input)
    report = CountReport()
    for name, module in units.items():
        if isinstance(module, StructuredLinear):
            params = module.params()
        else:
            params = count_params(module, recurse=False)
        flops = _module_flops(module, shapes[name])
        if params or flops.total or shapes[name].calls:
            report.rows.append(
                CountRow(name or "(model)", type(module).__name__, params, flops.total, flops.matmul,
                         shapes[name].calls, isinstance(module, StructuredLinear))
            )
    return report
