"""Export an escnn encoder to plain PyTorch modules for inference.

escnn's own ``export()`` covers convolutions and batch norms but not Fourier activations,
tensor-product nonlinearities, gates or anti-aliased pooling; those are rebuilt here from the
buffers escnn already computed, so the exported model computes the same function (in eval mode)
without escnn's basis expansion at every call.  Structured mixings stay structured (their
per-irrep plugins are plain PyTorch already), so :func:`structlayers.collapse` can then choose
dense or structured per mixing block.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from escnn import nn as enn
from torch import Tensor, nn

from atompaint.encoders.blocks import ResBlock
from atompaint.encoders.layers import FourierActivation, fourier_pointwise
from atompaint.encoders.mixing import IrrepMixing
from atompaint.encoders.pooling import BlurPoolExport
from atompaint.encoders.separable import SeparableR3Conv
from atompaint.encoders.tensor_product import CGTensorProduct


class FourierActivationExport(nn.Module):
    """Plain version of :class:`FourierActivation`: ``Ainv @ f(A @ x)`` per field."""

    def __init__(self, module: FourierActivation) -> None:
        super().__init__()
        self.channels = len(module.in_type)
        self.register_buffer("A", module.A.detach().clone())
        self.register_buffer("Ainv", module.Ainv.detach().clone())
        self.function: Callable[[Tensor], Tensor] = module._function

    def forward(self, x: Tensor) -> Tensor:
        return fourier_pointwise(x, self.A, self.Ainv, self.function, self.channels)


class TensorProductExport(nn.Module):
    """Plain version of escnn's ``TensorProductModule``: per field ``M @ (x kron x)``."""

    def __init__(self, module: enn.TensorProductModule) -> None:
        super().__init__()
        module.eval()
        self.channels = len(module.in_type)
        self.in_size = module.in_type.representations[0].size
        self.out_size = module.out_type.representations[0].size
        matrix = module.matrix.detach().view(self.channels, self.out_size, self.in_size**2).clone()
        self.register_buffer("matrix", matrix)

    def forward(self, x: Tensor) -> Tensor:
        b, _, *spatial = x.shape
        x = x.view(b, self.channels, self.in_size, *spatial)
        outer = torch.einsum("bci...,bco...->bcio...", x, x).reshape(b, self.channels, self.in_size**2, *spatial)
        y = torch.einsum("coi,bci...->bco...", self.matrix, outer)
        return y.reshape(b, self.channels * self.out_size, *spatial)


class GateExport(nn.Module):
    """Plain version of ``GatedNonLinearity1`` (``sigmoid(gate - bias) * field``) for
    ``[gates..., fields...]`` inputs of uniform fields."""

    def __init__(self, module: enn.GatedNonLinearity1) -> None:
        super().__init__()
        self.gates = len(module.out_type)
        self.field_size = module.out_type.representations[0].size
        if not module.out_type.uniform:
            raise ValueError("only uniform gated field types can be exported")
        self.register_buffer("bias", module.bias.detach().clone().view(-1))

    def forward(self, x: Tensor) -> Tensor:
        b, _, *spatial = x.shape
        bias = self.bias.view(1, -1, *[1] * len(spatial))
        gates = torch.sigmoid(x[:, : self.gates] - bias).unsqueeze(2)
        fields = x[:, self.gates :].reshape(b, self.gates, self.field_size, *spatial)
        return (gates * fields).reshape(b, self.gates * self.field_size, *spatial)


class ResBlockExport(nn.Module):
    """Plain version of :class:`~atompaint.encoders.blocks.ResBlock`."""

    def __init__(self, block: ResBlock) -> None:
        super().__init__()
        self.conv1 = export_module(block.conv1)
        self.bn1 = export_module(block.bn1)
        self.act1 = export_module(block.act1)
        self.conv2 = export_module(block.conv2)
        self.bn2 = export_module(block.bn2)
        self.act2 = export_module(block.act2)
        self.skip = nn.Identity() if block.skip is None else export_module(block.skip)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(y + self.skip(x))


class ExportedEncoder(nn.Module):
    """The plain-PyTorch encoder: ``forward`` (invariant) and ``fields`` (equivariant), as in
    :class:`~atompaint.encoders.architectures.Encoder`."""

    def __init__(self, body: nn.Sequential, readout: nn.Module, out_features: int, field_features: int) -> None:
        super().__init__()
        self.body = body
        self.readout = readout
        self.out_features = out_features
        self.field_features = field_features

    def fields(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(2).mean(dim=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.fields(x))


def export_module(module: nn.Module) -> nn.Module:
    """Plain-PyTorch equivalent of one escnn module of an encoder (eval mode)."""
    if isinstance(module, enn.SequentialModule):
        return nn.Sequential(*(export_module(m) for m in module.children()))
    if isinstance(module, ResBlock):
        return ResBlockExport(module)
    if isinstance(module, FourierActivation):
        return FourierActivationExport(module)
    if isinstance(module, enn.TensorProductModule):
        return TensorProductExport(module)
    if isinstance(module, (SeparableR3Conv, IrrepMixing, CGTensorProduct)):
        return module.export()
    if isinstance(module, enn.GatedNonLinearity1):
        return GateExport(module)
    if isinstance(module, enn.PointwiseAvgPoolAntialiased3D):
        return BlurPoolExport(module.filter[0, 0], module.stride, module.padding)
    if isinstance(module, (enn.R3Conv, enn.IIDBatchNorm3d)):
        return module.export()
    raise TypeError(f"don't know how to export {type(module).__name__}")


def export_encoder(encoder: nn.Module) -> ExportedEncoder:
    """Export an :class:`~atompaint.encoders.architectures.Encoder`; the original is left in eval mode."""
    encoder.eval()
    with torch.no_grad():
        body = export_module(encoder.body)
    exported = ExportedEncoder(body, copy.deepcopy(encoder.readout), encoder.out_features, encoder.field_features)
    return exported.eval()
