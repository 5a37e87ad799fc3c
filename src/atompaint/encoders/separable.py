"""Depthwise-separable steerable convolutions, and the one switch between them and escnn's dense ones.

A depthwise-separable convolution (Chollet, "Xception", CVPR 2017; Howard et al., "MobileNets",
2017), made equivariant, factors a ``k x k x k`` steerable convolution into

1. a *depthwise* steerable convolution: every input field convolved on its own into one field
   (escnn's ``R3Conv(..., groups=number_of_fields)``), which carries the spatial extent, stride and
   padding, and
2. an equivariant 1x1x1 channel mixing (:class:`~atompaint.encoders.mixing.IrrepMixing`), whose
   per-irrep blocks are structlayers plugins.

Between ``c`` spectral regular fields of band limit 2 this replaces the ``(35 c)^2 k^3``
multiply-adds per voxel of the dense convolution escnn executes by ``c 35^2 k^3 + 153 c^2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from escnn import nn as enn

from atompaint.encoders.mixing import IrrepMixing, MixingSpec

ConvForm = Literal["dense", "separable"]
CONV_FORMS: tuple[str, ...] = ("dense", "separable")


@dataclass
class ConvSpec:
    """How an encoder builds its convolutions: ``form`` dense (escnn's ``R3Conv``) or separable
    (depthwise ``R3Conv`` + structured mixing with ``mixing``); pointwise (1x1x1) steps follow the
    same form (a dense ``R3Conv(kernel_size=1)`` or the mixing alone)."""

    form: ConvForm = "dense"
    mixing: MixingSpec = field(default_factory=MixingSpec)

    def __post_init__(self) -> None:
        if self.form not in CONV_FORMS:
            raise ValueError(f"unknown convolution form {self.form!r}; choose from {', '.join(CONV_FORMS)}")


def depthwise_type(in_type: enn.FieldType, out_type: enn.FieldType) -> enn.FieldType:
    """The fields the depthwise step produces, one per input field.

    A non-scalar field is convolved into a field of its own type.  A scalar field (an input
    channel) is convolved into a copy of the largest field of ``out_type``: a scalar-to-scalar
    steerable kernel is isotropic, so only this lifts a scalar image to the higher irreps.
    """
    if not in_type.uniform:
        raise ValueError(f"a depthwise convolution needs uniform input fields, got {in_type}")
    rho = in_type.representations[0]
    if any(not in_type.fibergroup.irrep(*i).is_trivial() for i in rho.irreps):
        return in_type
    widest = max(out_type.representations, key=lambda r: r.size)
    return enn.FieldType(in_type.gspace, len(in_type) * [widest])


class SeparableR3Conv(enn.EquivariantModule):
    """``mixing(depthwise(x))``: a drop-in for ``enn.R3Conv(in_type, out_type, kernel_size, stride=,
    padding=)`` (see the module docs).  ``bias`` goes to the mixing's trivial irreps."""

    def __init__(self, in_type: enn.FieldType, out_type: enn.FieldType, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, mixing: MixingSpec | None = None, bias: bool = False) -> None:
        super().__init__()
        self.in_type, self.out_type = in_type, out_type
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        mid = depthwise_type(in_type, out_type)
        self.depthwise = enn.R3Conv(in_type, mid, kernel_size=kernel_size, stride=stride, padding=padding,
                                    groups=len(in_type), bias=False)
        self.mixing = IrrepMixing(mid, out_type, mixing, bias=bias)

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        return self.mixing(self.depthwise(x))

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.mixing.evaluate_output_shape(self.depthwise.evaluate_output_shape(input_shape))

    def export(self):
        from torch import nn

        return nn.Sequential(self.depthwise.export(), self.mixing.export())


def make_conv(in_type: enn.FieldType, out_type: enn.FieldType, spec: ConvSpec, *, kernel_size: int = 3,
              stride: int = 1, padding: int = 0, bias: bool = False) -> enn.EquivariantModule:
    """A ``kernel_size`` convolution in the form ``spec`` asks for (1x1x1: a pointwise step)."""
    if kernel_size == 1 and stride == 1 and padding == 0:
        return make_pointwise(in_type, out_type, spec, bias=bias)
    if spec.form == "separable":
        return SeparableR3Conv(in_type, out_type, kernel_size, stride=stride, padding=padding, mixing=spec.mixing,
                               bias=bias)
    return enn.R3Conv(in_type, out_type, kernel_size=kernel_size, stride=stride, padding=padding, bias=bias)


def make_pointwise(in_type: enn.FieldType, out_type: enn.FieldType, spec: ConvSpec, *,
                   bias: bool = False) -> enn.EquivariantModule:
    """A 1x1x1 step: escnn's dense ``R3Conv(kernel_size=1)`` or the structured mixing."""
    if spec.form == "separable":
        return IrrepMixing(in_type, out_type, spec.mixing, bias=bias)
    return enn.R3Conv(in_type, out_type, kernel_size=1, bias=bias)
