"""SE(3)-equivariant (escnn) encoders of voxelized proteins with rotation-invariant outputs.

Architectures: ``no-downsample`` (unpadded 3x3x3 convolutions down to one voxel), ``vgg`` (padded
stride-2 down-sampling between padded stride-1 convolutions), ``shallow`` (as few layers as
possible, alternating stride 1 and 2: 21 -> 19 -> 9 -> 7 -> 3 -> 1; ``repeats`` > 1 is its deep
variant) and ``resnet`` (a residual block then an anti-aliased stride-2 pool per resolution) with
``basic`` / ``alpha`` / ``gamma`` blocks; 3x3x3 or 5x5x5 kernels.

Every architecture builds its convolutions dense (escnn's ``R3Conv``) or separable: a depthwise
steerable convolution and an equivariant channel mixing whose per-irrep blocks are any structlayers
plugin (:mod:`atompaint.encoders.mixing`, :mod:`atompaint.encoders.separable`); the gamma block's
tensor product can run through its Clebsch-Gordan decomposition
(:mod:`atompaint.encoders.tensor_product`).  ``conv: grid`` is the grid-domain separable form
(:mod:`atompaint.encoders.grid`), ``mixing: auto`` picks each layer's mixing by measured training
time (:mod:`atompaint.encoders.automix`).  :mod:`atompaint.encoders.costs` counts parameters and
FLOPs per module type and measures memory; :mod:`atompaint.encoders.testing` is the mixing's contract.

Importing the package teaches :mod:`structlayers.utils.tracing` escnn's ``GeometricTensor``, so
:func:`structlayers.count` and :func:`structlayers.collapse` trace through escnn modules.
"""

from escnn.nn import GeometricTensor

from atompaint.encoders.architectures import (
    ARCHITECTURES,
    Encoder,
    EncoderConfig,
    build_encoder,
    plan_no_downsample,
    plan_resnet,
    plan_shallow,
    plan_vgg,
)
from atompaint.encoders.blocks import BLOCK_TYPES, ResBlock
from atompaint.encoders.export import ExportedEncoder, export_encoder
from atompaint.encoders.fields import SCHEDULES, channel_schedule, plan_channels
from atompaint.encoders.grid import GridEncoder
from atompaint.encoders.layers import ACTIVATIONS, FourierActivation, InvariantReadout, first_hermite
from atompaint.encoders.mixing import IrrepMixing, MixingSpec, PerIrrepLinear
from atompaint.encoders.separable import ConvSpec, IrrepwiseR3Conv, SeparableR3Conv
from atompaint.encoders.tensor_product import CGTensorProduct, fused_available, plain_form
from structlayers.utils.tracing import register_tensor_type

register_tensor_type(GeometricTensor, lambda g: g.tensor)

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "BLOCK_TYPES",
    "CGTensorProduct",
    "ConvSpec",
    "Encoder",
    "EncoderConfig",
    "ExportedEncoder",
    "FourierActivation",
    "GridEncoder",
    "InvariantReadout",
    "IrrepMixing",
    "IrrepwiseR3Conv",
    "MixingSpec",
    "PerIrrepLinear",
    "ResBlock",
    "SCHEDULES",
    "SeparableR3Conv",
    "build_encoder",
    "channel_schedule",
    "export_encoder",
    "first_hermite",
    "fused_available",
    "plan_channels",
    "plan_no_downsample",
    "plan_resnet",
    "plan_shallow",
    "plan_vgg",
    "plain_form",
]
