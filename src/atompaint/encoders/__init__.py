"""SE(3)-equivariant (escnn) encoders of voxelized proteins with rotation-invariant outputs.

Architectures: ``no-downsample`` (#1 of seed 000), ``vgg`` (#2, padded down-sampling),
``shallow`` (#3, 21 -> 19 -> 9 -> 7 -> 3 -> 1) and ``resnet`` (seed 001, pooling after every block)
with ``basic`` / ``alpha`` / ``gamma`` blocks (seed 004).
"""

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
