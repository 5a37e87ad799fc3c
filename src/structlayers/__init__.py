"""structlayers: structured efficient linear layers (ACDC, AFDF, stacks, ...) that stand in for
dense ones, with exact accounting and collapsible test-time forms.

>>> import structlayers
>>> layer = structlayers.create("stack", 512, 512, factor="acdc", depth=12)
>>> weight, bias = layer.to_dense()
"""

from structlayers.accounting import CountReport, count
from structlayers.collapse import CollapseReport, collapse
from structlayers.layers import FlopCount, NotCollapsibleError, StructuredLinear
from structlayers.registry import available, create, options, register
from structlayers.surgery import ReplaceReport, replace

__all__ = [
    "CollapseReport",
    "CountReport",
    "FlopCount",
    "NotCollapsibleError",
    "ReplaceReport",
    "StructuredLinear",
    "available",
    "collapse",
    "count",
    "create",
    "options",
    "register",
    "replace",
]
