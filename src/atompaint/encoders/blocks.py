"""Equivariant residual blocks: "basic" (as in escnn's examples), "alpha" and "gamma".

All blocks are two padded 3x3x3 convolutions with batch norm and a skip connection, so they keep
the spatial size; down-sampling happens in a separate pooling layer after the block.  They differ
in their nonlinearities:

- ``basic``: Fourier ELU after the first convolution and after the sum.
- ``alpha``: a gated nonlinearity after the first convolution, a leaky hard-shrink Fourier
  activation after the sum.
- ``gamma``: a learnable tensor-product (quadratic) nonlinearity after the first convolution, the
  first-Hermite Fourier activation after the sum.
"""

from __future__ import annotations

from typing import Literal

from escnn import nn as enn

from atompaint.encoders.layers import FourierActivation, IIDBatchNorm, gate_field_type
from atompaint.encoders.separable import ConvSpec, make_conv, make_pointwise
from atompaint.encoders.tensor_product import CGTensorProduct

BlockType = Literal["basic", "alpha", "gamma"]
BLOCK_TYPES: tuple[str, ...] = ("basic", "alpha", "gamma")
TensorProduct = Literal["escnn", "clebsch-gordan"]
TENSOR_PRODUCTS: tuple[str, ...] = ("escnn", "clebsch-gordan")


def make_tensor_product(in_type: enn.FieldType, out_type: enn.FieldType, form: TensorProduct) -> enn.EquivariantModule:
    """The quadratic nonlinearity of the gamma block: escnn's ``TensorProductModule``, or the same
    function class through its Clebsch-Gordan decomposition (:mod:`atompaint.encoders.tensor_product`)."""
    if form == "clebsch-gordan":
        return CGTensorProduct(in_type, out_type)
    if form == "escnn":
        return enn.TensorProductModule(in_type, out_type)
    raise ValueError(f"unknown tensor product {form!r}; choose from {', '.join(TENSOR_PRODUCTS)}")


class ResBlock(enn.EquivariantModule):
    """``act2(bn2(conv2(act1(bn1(conv1(x))))) + skip(x))`` on spectral regular fields.

    ``mid_type`` (the fields between the two convolutions) narrower than ``out_type`` makes a
    bottleneck block.  ``skip`` is the identity when the types agree, else a 1x1x1 convolution.
    ``conv`` chooses dense or separable convolutions (and a dense or structured 1x1x1 skip),
    ``kernel_size`` 3 or 5 (padded to keep the size), ``tensor_product`` the form of the gamma
    block's quadratic nonlinearity.
    """

    def __init__(
        self,
        in_type: enn.FieldType,
        mid_type: enn.FieldType,
        out_type: enn.FieldType,
        *,
        block: BlockType,
        band_limit: int,
        grid_size: int,
        kernel_size: int = 3,
        conv: ConvSpec | None = None,
        tensor_product: TensorProduct = "escnn",
    ) -> None:
        super().__init__()
        conv = conv or ConvSpec()
        if kernel_size % 2 == 0:
            raise ValueError(f"a residual block needs an odd kernel size, got {kernel_size}")
        pad = (kernel_size - 1) // 2
        if block not in BLOCK_TYPES:
            raise ValueError(f"unknown block type {block!r}; choose from {', '.join(BLOCK_TYPES)}")
        self.block = block
        self.in_type = in_type
        self.out_type = out_type

        conv1_out = gate_field_type(mid_type) if block == "alpha" else mid_type
        self.conv1 = make_conv(in_type, conv1_out, conv, kernel_size=kernel_size, padding=pad)
        self.bn1 = IIDBatchNorm(conv1_out)
        if block == "alpha":
            self.act1 = enn.GatedNonLinearity1(conv1_out)
        elif block == "gamma":
            self.act1 = make_tensor_product(mid_type, mid_type, tensor_product)
        else:
            self.act1 = FourierActivation(len(mid_type), band_limit, grid_size, "elu")
        self.conv2 = make_conv(mid_type, out_type, conv, kernel_size=kernel_size, padding=pad)
        self.bn2 = IIDBatchNorm(out_type)
        function = {"basic": "elu", "alpha": "leaky_hardshrink", "gamma": "hermite"}[block]
        self.act2 = FourierActivation(len(out_type), band_limit, grid_size, function)
        self.skip = None if in_type == out_type else make_pointwise(in_type, out_type, conv)

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        y = self.act1(self.bn1(self.conv1(x)))
        if self.block == "alpha":
            y = enn.GeometricTensor(y.tensor, self.conv2.in_type)
        y = self.bn2(self.conv2(y))
        shortcut = x if self.skip is None else self.skip(x)
        return self.act2(y + shortcut)

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (input_shape[0], self.out_type.size, *input_shape[2:])
