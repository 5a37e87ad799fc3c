"""SE(3)-equivariant (escnn) encoders of voxelized proteins with rotation-invariant outputs.

Architectures: ``no-downsample`` (unpadded 3x3x3 convolutions down to one voxel), ``vgg`` (padded
stride-2 down-sampling between padded stride-1 convolutions), ``shallow`` (as few layers as
possible, alternating stride 1 and 2: 21 -> 19 -> 9 -> 7 -> 3 -> 1) and ``resnet`` (a residual
block then an anti-aliased stride-2 pool per resolution) with ``basic`` / ``alpha`` / ``gamma``
blocks.  :mod:`atompaint.encoders.costs` counts their FLOPs and measures their memory.

Importing the package teaches :mod:`structlayers.tracing` escnn's ``GeometricTensor``, so
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
from atompaint.encoders.fields import channel_schedule
from atompaint.encoders.layers import ACTIVATIONS, FourierActivation, InvariantReadout, first_hermite
from structlayers.tracing import register_tensor_type

register_tensor_type(GeometricTensor, lambda g: g.tensor)

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "BLOCK_TYPES",
    "Encoder",
    "EncoderConfig",
    "ExportedEncoder",
    "FourierActivation",
    "InvariantReadout",
    "ResBlock",
    "build_encoder",
    "channel_schedule",
    "export_encoder",
    "first_hermite",
    "plan_no_downsample",
    "plan_resnet",
    "plan_shallow",
    "plan_vgg",
]
