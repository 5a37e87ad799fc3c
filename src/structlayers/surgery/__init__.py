"""Model surgery: replace a model's dense layers (``nn.Linear``, 1x1 and k x k convolutions) by
structured layer plugins, optionally fitted to the trained weights.

>>> import structlayers
>>> from structlayers.models import build_model, example_input
>>> model, report = structlayers.replace(build_model("resnet18"), "stack", ["pointwise"],
...                                      factor="acdc", depth=12, example_input=example_input("resnet18"))
>>> print(report.to_text())  # doctest: +SKIP
"""

from structlayers.surgery.replace import (
    DEFAULT_KINDS,
    KINDS,
    FitOptions,
    UnsupportedModuleError,
    classify,
    replace,
    resolve_layer,
    separable_factors,
)
from structlayers.surgery.report import ReplaceReport, Replacement, Skipped
from structlayers.surgery.wrappers import PointwiseConv, SeparableConv

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "FitOptions",
    "PointwiseConv",
    "ReplaceReport",
    "Replacement",
    "SeparableConv",
    "Skipped",
    "UnsupportedModuleError",
    "classify",
    "replace",
    "resolve_layer",
    "separable_factors",
]
