"""Model surgery: replace a model's dense layers (``nn.Linear``, 1x1 and k x k convolutions) by
structured layer plugins, optionally fitted to the trained weights.

>>> import structlayers
>>> from structlayers.lab.models import build_model, example_input
>>> model, report = structlayers.replace(build_model("resnet18"), "stack", ["pointwise"],
...                                      factor="acdc", depth=12, example_input=example_input("resnet18"))
>>> print(report.to_text())  # doctest: +SKIP
"""

from structlayers.surgery.fit import FitOptions, FitResult, fit_layer, fit_outputs
from structlayers.surgery.replace import (
    DEFAULT_KINDS,
    INIT_ALIASES,
    INITS,
    KINDS,
    REPLACE_FIT,
    UnsupportedModuleError,
    check_init_from,
    classify,
    replace,
    separable_factors,
)
from structlayers.surgery.report import Replacement, ReplaceReport, Skipped
from structlayers.surgery.wrappers import PointwiseConv, SeparableConv

__all__ = [
    "DEFAULT_KINDS",
    "INITS",
    "INIT_ALIASES",
    "KINDS",
    "REPLACE_FIT",
    "FitOptions",
    "FitResult",
    "PointwiseConv",
    "ReplaceReport",
    "Replacement",
    "SeparableConv",
    "Skipped",
    "UnsupportedModuleError",
    "check_init_from",
    "classify",
    "fit_layer",
    "fit_outputs",
    "replace",
    "separable_factors",
]
