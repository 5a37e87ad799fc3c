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

The depthwise step comes in two forms (:data:`DEPTHWISE_FORMS`):

- ``field``: one steerable kernel per field, ``35 -> 35`` at band limit 2 (every irrep of the
  field can reach every other one through the kernel's harmonics);
- ``irrep`` (:class:`IrrepwiseR3Conv`): every irrep copy convolved on its own, ``psi -> psi``,
  by a steerable ``dim psi -> dim psi`` kernel: ``sum_copies dim^2 k^3`` = ``(1 + 3*9 + 5*25) k^3``
  multiply-adds per field and voxel at band limit 2 instead of ``35^2 k^3`` (8x fewer).  The
  mixing that follows couples the copies and the fields.  Each block is still directional for
  ``l >= 1`` (an ``l -> l`` kernel has harmonics ``J = 0 .. 2l``), but the product is a smaller
  function class than the per-field form: no kernel maps one irrep type to another before the
  mixing, so e.g. the ``J = 1`` harmonic of a scalar copy never feeds an ``l = 1`` output.  A
  convolution whose input is only scalar fields (the stem without ``dense_stem``) has only
  isotropic irrep-wise kernels and could never produce directional features; it keeps the
  per-field form (which lifts the scalars into a full field).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from escnn import nn as enn
from torch import Tensor, nn

from atompaint.encoders.mixing import IrrepLayout, IrrepMixing, MixingSpec, PerIrrepLinear, irrep_key

ConvForm = Literal["dense", "separable", "grid"]
CONV_FORMS: tuple[str, ...] = ("dense", "separable", "grid")
DepthwiseForm = Literal["field", "irrep"]
DEPTHWISE_FORMS: tuple[str, ...] = ("field", "irrep")


@dataclass
class ConvSpec:
    """How an encoder builds its convolutions: ``form`` dense (escnn's ``R3Conv``) or separable
    (depthwise steerable convolution, per field or per irrep copy as ``depthwise`` says, +
    structured mixing with ``mixing``); pointwise (1x1x1) steps follow the same form (a dense
    ``R3Conv(kernel_size=1)`` or the mixing alone)."""

    form: ConvForm = "dense"
    mixing: MixingSpec = field(default_factory=MixingSpec)
    depthwise: DepthwiseForm = "field"

    def __post_init__(self) -> None:
        if self.form not in CONV_FORMS:
            raise ValueError(f"unknown convolution form {self.form!r}; choose from {', '.join(CONV_FORMS)}")
        if self.depthwise not in DEPTHWISE_FORMS:
            raise ValueError(f"unknown depthwise form {self.depthwise!r}; choose from {', '.join(DEPTHWISE_FORMS)}")


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


def has_nontrivial_irreps(field_type: enn.FieldType) -> bool:
    """Whether any irrep of ``field_type`` is non-trivial (else a steerable kernel on it is isotropic)."""
    group = field_type.fibergroup
    return any(not group.irrep(*i).is_trivial() for i in field_type.irreps)


class TensorCall(nn.Module):
    """An escnn module called on plain tensors of its ``in_type`` (so plain and escnn cores share code)."""

    def __init__(self, module: enn.EquivariantModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(enn.GeometricTensor(x, self.module.in_type)).tensor

    def export(self) -> nn.Module:
        return self.module.export()


#: The channels-last memory format of an input of each number of dimensions (3D convolutions: 5).
CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def channels_last(x: Tensor) -> Tensor:
    """``x`` in the channels-last memory format (same shape and values), where oneDNN's grouped
    convolutions are faster on CPU: 1.5-1.9x forward + backward for the irrep-wise and per-field
    depthwise steps at the seed-004 shapes (one thread, conversions included)."""
    return x.contiguous(memory_format=CHANNELS_LAST.get(x.dim(), torch.contiguous_format))


class PerIrrepConv(nn.Module):
    """Irrep-wise depthwise convolution on plain tensors ``(B, C, *spatial)``.

    ``convs[psi]`` maps the copies of irrep ``psi`` gathered copy-major, ``(B, m * dim, *spatial)``,
    to the same layout (a grouped convolution, one group per copy).  :meth:`parts` returns these
    per-irrep outputs (in the irrep basis), :meth:`forward` scatters them back into the field
    layout (and the field basis, where the change of basis is not the identity).  ``convs`` hold
    escnn convolutions (through :class:`TensorCall`) in training, plain ``nn.Conv3d`` once exported.
    """

    def __init__(self, layout: IrrepLayout, convs: dict[tuple, nn.Module]) -> None:
        super().__init__()
        self.layout = layout
        self.size = layout.size
        self.convs = nn.ModuleDict()
        order = []
        for irrep_id, conv in convs.items():
            key = irrep_key(irrep_id)
            self.convs[key] = conv
            index = layout.positions[irrep_id].reshape(-1)
            self.register_buffer(f"{key}_index", torch.from_numpy(index.copy()), persistent=False)
            order.append(index)
        self.register_buffer("inverse", torch.from_numpy(np.argsort(np.concatenate(order))), persistent=False)
        if layout.basis is not None:
            self.register_buffer("basis_in", torch.from_numpy(np.linalg.inv(layout.basis)).float(), persistent=False)
            self.register_buffer("basis_out", torch.from_numpy(layout.basis).float(), persistent=False)
        else:
            self.basis_in = self.basis_out = None

    def parts(self, x: Tensor, keys: list[str] | None = None) -> tuple[Tensor, ...]:
        """The convolved copies of each irrep in ``keys`` (default: all), irrep basis, copy-major.

        The grouped convolutions (one group of ``dim psi`` channels per copy) run in the channels-last
        memory format (:func:`channels_last`); the parts come back in that format."""
        if x.dim() < 2 or x.shape[1] != self.size:
            raise ValueError(f"expected input (B, {self.size}, ...), got {tuple(x.shape)}")
        if self.basis_in is not None:
            x = torch.einsum("oc,bc...->bo...", self.basis_in.to(x.dtype), x)
        return tuple(self.convs[key](channels_last(x.index_select(1, getattr(self, f"{key}_index"))))
                     for key in (keys if keys is not None else self.convs))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat(self.parts(x), 1).index_select(1, self.inverse).contiguous()
        if self.basis_out is not None:
            y = torch.einsum("oc,bc...->bo...", self.basis_out.to(y.dtype), y)
        return y

    def exported(self) -> PerIrrepConv:
        """A copy whose convolutions are plain PyTorch (each escnn convolution's ``export()``)."""
        convs = {irrep_id: _plain(self.convs[irrep_key(irrep_id)]) for irrep_id in self.layout.positions}
        return PerIrrepConv(self.layout, convs).eval()


def _plain(module: nn.Module) -> nn.Module:
    return module.export() if isinstance(module, TensorCall) else copy.deepcopy(module)


class IrrepwiseR3Conv(enn.EquivariantModule):
    """Irrep-wise depthwise steerable convolution ``in_type -> in_type`` (see the module docs):
    for each irrep ``psi`` with ``m`` copies in ``in_type``, one ``R3Conv`` over ``m`` copies of
    ``psi`` with ``groups=m``, on the channels gathered into the irrep basis.

    A smaller function class than the per-field depthwise convolution (only ``psi -> psi`` kernels);
    equivariant for any irreps escnn builds steerable kernels for.  Input of scalar fields only
    is refused: all its kernels would be isotropic.
    """

    def __init__(self, in_type: enn.FieldType, kernel_size: int, *, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        if not has_nontrivial_irreps(in_type):
            raise ValueError(f"an irrep-wise depthwise convolution of scalar fields only ({in_type}) has isotropic "
                             "kernels only; use the per-field depthwise form, which lifts scalars into fields")
        self.in_type = self.out_type = in_type
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        group = in_type.fibergroup
        layout = IrrepLayout.of(in_type)
        convs: dict[tuple, nn.Module] = {}
        for irrep_id, positions in layout.positions.items():
            copies = positions.shape[0]
            ftype = enn.FieldType(in_type.gspace, copies * [group.irrep(*irrep_id)])
            convs[irrep_id] = TensorCall(enn.R3Conv(ftype, ftype, kernel_size=kernel_size, stride=stride,
                                                    padding=padding, groups=copies, bias=False))
        self.core = PerIrrepConv(layout, convs)

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        if x.type != self.in_type:
            raise ValueError("input field type does not match the convolution's in_type")
        return enn.GeometricTensor(self.core(x.tensor), self.out_type)

    def parts(self, x: enn.GeometricTensor, keys: list[str]) -> tuple[Tensor, ...]:
        return self.core.parts(x.tensor, keys)

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        conv = next(iter(self.core.convs.values())).module
        spatial = conv.evaluate_output_shape((input_shape[0], conv.in_type.size, *input_shape[2:]))[2:]
        return (input_shape[0], self.out_type.size, *spatial)

    def export(self) -> PerIrrepConv:
        return self.core.exported()


class IrrepSeparableExport(nn.Module):
    """Plain form of a separable convolution with irrep-wise depthwise step: the per-irrep
    convolution outputs go to the mixing's blocks directly (no scatter into fields and gather back)."""

    def __init__(self, depthwise: PerIrrepConv, linear: PerIrrepLinear) -> None:
        super().__init__()
        self.depthwise, self.linear = depthwise, linear

    def forward(self, x: Tensor) -> Tensor:
        return self.linear.forward_irreps(self.depthwise.parts(x, list(self.linear.maps)))


class SeparableR3Conv(enn.EquivariantModule):
    """``mixing(depthwise(x))``: a drop-in for ``enn.R3Conv(in_type, out_type, kernel_size, stride=,
    padding=)`` (see the module docs).  ``depthwise`` is ``field`` or ``irrep`` (scalar-only inputs
    keep the per-field form); ``bias`` goes to the mixing's trivial irreps.  With the irrep-wise
    form the per-irrep convolution outputs feed the mixing's blocks directly."""

    def __init__(self, in_type: enn.FieldType, out_type: enn.FieldType, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, mixing: MixingSpec | None = None, bias: bool = False,
                 depthwise: DepthwiseForm = "field") -> None:
        super().__init__()
        if depthwise not in DEPTHWISE_FORMS:
            raise ValueError(f"unknown depthwise form {depthwise!r}; choose from {', '.join(DEPTHWISE_FORMS)}")
        self.in_type, self.out_type = in_type, out_type
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.irrepwise = depthwise == "irrep" and has_nontrivial_irreps(in_type)
        if self.irrepwise:
            self.depthwise: enn.EquivariantModule = IrrepwiseR3Conv(in_type, kernel_size, stride=stride,
                                                                    padding=padding)
            mid = in_type
        else:
            mid = depthwise_type(in_type, out_type)
            self.depthwise = enn.R3Conv(in_type, mid, kernel_size=kernel_size, stride=stride, padding=padding,
                                        groups=len(in_type), bias=False)
        self.mixing = IrrepMixing(mid, out_type, mixing, bias=bias)

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        if self.irrepwise:
            return self.mixing(self.depthwise.parts(x, list(self.mixing.linear.maps)))
        # The grouped (per-field) convolution in channels-last; the mixing reads that layout as it is.
        return self.mixing(self.depthwise(enn.GeometricTensor(channels_last(x.tensor), x.type, x.coords)))

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.mixing.evaluate_output_shape(self.depthwise.evaluate_output_shape(input_shape))

    def export(self) -> nn.Module:
        if self.irrepwise:
            return IrrepSeparableExport(self.depthwise.export(), self.mixing.export())
        return nn.Sequential(self.depthwise.export(), self.mixing.export())


def make_conv(in_type: enn.FieldType, out_type: enn.FieldType, spec: ConvSpec, *, kernel_size: int = 3,
              stride: int = 1, padding: int = 0, bias: bool = False) -> enn.EquivariantModule:
    """A ``kernel_size`` convolution in the form ``spec`` asks for (1x1x1: a pointwise step)."""
    if kernel_size == 1 and stride == 1 and padding == 0:
        return make_pointwise(in_type, out_type, spec, bias=bias)
    if spec.form == "separable":
        return SeparableR3Conv(in_type, out_type, kernel_size, stride=stride, padding=padding, mixing=spec.mixing,
                               bias=bias, depthwise=spec.depthwise)
    return enn.R3Conv(in_type, out_type, kernel_size=kernel_size, stride=stride, padding=padding, bias=bias)


def make_pointwise(in_type: enn.FieldType, out_type: enn.FieldType, spec: ConvSpec, *,
                   bias: bool = False) -> enn.EquivariantModule:
    """A 1x1x1 step: escnn's dense ``R3Conv(kernel_size=1)`` or the structured mixing."""
    if spec.form == "separable":
        return IrrepMixing(in_type, out_type, spec.mixing, bias=bias)
    return enn.R3Conv(in_type, out_type, kernel_size=1, bias=bias)
