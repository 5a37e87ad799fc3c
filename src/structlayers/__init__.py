"""structlayers: structured efficient linear layers (ACDC, AFDF, stacks, ...) that stand in for
dense ones, with exact accounting and collapsible test-time forms.

>>> import structlayers
>>> layer = structlayers.create("acdc", 512, 512, depth=12)   # a stack of 12 ACDC factors
>>> weight, bias = layer.to_dense()

The package is the library: layers and their registry, accounting, collapse, surgery and the
plugin contract (:mod:`structlayers.testing`).  Experiments built on it live in
:mod:`structlayers.lab` and the command line in :mod:`structlayers.cli`; neither is imported here.
"""

import structlayers.layers  # noqa: F401  (registers the built-in plugins)
from structlayers.accounting import CountReport, count
from structlayers.base import Cascading, FlopCount, Fusable, NotCollapsibleError, StructuredLinear, dense_linear
from structlayers.collapse import CollapseReport, collapse
from structlayers.export import export, exportable
from structlayers.registry import LayerSpec, available, create, options, register, resolve
from structlayers.surgery import ReplaceReport, replace

__all__ = [
    "Cascading",
    "CollapseReport",
    "CountReport",
    "FlopCount",
    "Fusable",
    "LayerSpec",
    "NotCollapsibleError",
    "ReplaceReport",
    "StructuredLinear",
    "available",
    "collapse",
    "count",
    "create",
    "dense_linear",
    "export",
    "exportable",
    "options",
    "register",
    "replace",
    "resolve",
]
