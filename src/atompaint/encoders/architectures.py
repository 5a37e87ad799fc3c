"""Encoder configurations and builders: three plain equivariant CNNs and an equivariant ResNet.

Every architecture maps a voxelized image ``(B, C, L, L, L)`` (``L`` odd) to rotation-invariant
features ``(B, out_features)``.  Spatial plans use odd grid sizes and centred strides only, so the
whole encoder commutes with the 90-degree rotations of the voxel grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from escnn import nn as enn
from torch import Tensor, nn

from atompaint.encoders.automix import (
    DEFAULT_CANDIDATES,
    apply_mixing_choices,
    candidate_spec,
    choose_mixing,
    describe_choices,
)
from atompaint.encoders.blocks import BLOCK_TYPES, TENSOR_PRODUCTS, ResBlock, TensorProduct
from atompaint.encoders.fields import (
    SCHEDULES,
    Schedule,
    aligned_pool_padding,
    conv_output_size,
    default_grid_size,
    plan_channels,
    spectral_field_type,
    trivial_field_type,
)
from atompaint.encoders.grid import (
    GridActivation,
    GridBatchNorm,
    GridEncoder,
    GridLift,
    GridPool,
    GridResBlock,
    GridSeparableConv,
)
from atompaint.encoders.layers import InvariantReadout, aligned_blur_pool, conv_bn_act
from atompaint.encoders.mixing import MixingSpec
from atompaint.encoders.separable import CONV_FORMS, DEPTHWISE_FORMS, ConvForm, ConvSpec, DepthwiseForm
from atompaint.voxelize import ImageParams
from structlayers.configs import flat_keys

Architecture = Literal["no-downsample", "vgg", "shallow", "resnet"]
ARCHITECTURES: tuple[str, ...] = ("no-downsample", "vgg", "shallow", "resnet")
#: The input an encoder expects by default: the default voxel image.
_DEFAULT_IMAGE = ImageParams()


@dataclass
class EncoderConfig:
    """Hyperparameters of an equivariant encoder.

    ``width`` and ``max_channels`` are the number of spectral regular fields in the first layer
    and the most any layer gets; ``schedule`` is the channel rule in between
    (:func:`~atompaint.encoders.fields.plan_channels`: ``linear`` / ``log`` interpolation to
    ``max_channels``, ``inverse-size`` proportional to the inverse side length, ``double`` on every
    down-sampling).  ``bottleneck`` (ResNet only) scales the fields between a block's two
    convolutions (``None``: no bottleneck).  ``repeats`` is the number of convolutions per
    resolution of the VGG-like and the shallow architectures (``repeats - 1`` padded stride-1 ones
    before each step; 1 for the shallow #3, more for its deep variant).  ``kernel_size`` is 3 or 5.

    ``conv: grid`` builds the grid-domain form instead (:mod:`atompaint.encoders.grid`: features on
    the 24 cube rotations, a lifting convolution, then depthwise, orientation and ``mixing`` steps;
    ``width`` and ``max_channels`` then count grid channels of 24 numbers per voxel);
    ``band_limit``, ``grid_size``, ``block``, ``depthwise``, ``dense_stem`` and ``tensor_product``
    concern the spectral forms only.
    ``conv`` is ``dense`` (escnn's ``R3Conv``) or ``separable`` (a depthwise steerable convolution
    and an equivariant channel mixing whose per-irrep blocks are the structlayers layer ``mixing``,
    a :class:`~atompaint.encoders.mixing.MixingSpec` or its text form ``"acdc:depth=2"``; 1x1x1
    skips become that mixing alone).  A configuration file or ``--set`` may give it flat, as the
    aliases ``mixing: acdc``, ``mixing_depth: 2``, ``mixing_options: {sigma: 0.1}``.
    ``depthwise`` is the separable convolutions' depthwise step: ``field`` (one steerable
    kernel per field) or ``irrep`` (one per irrep copy: 8x fewer FLOPs at band limit 2, a smaller
    function class; see :mod:`atompaint.encoders.separable`).  ``dense_stem`` keeps the first
    convolution dense in a separable encoder.
    ``mixing: auto`` chooses each layer's mixing among ``mixing_candidates`` (plugins in their text
    form, ``"acdc:depth=2"``) by measured forward + backward time at ``mixing_batch`` volumes
    (:mod:`atompaint.encoders.automix`); the built encoder's config records the choice per layer in
    ``mixing_choices`` (given, they are used as they are, without measuring).
    ``tensor_product`` is the form of the gamma block's quadratic nonlinearity (the same function
    class either way).  ``in_channels`` and ``input_size`` default to the default image
    (:class:`atompaint.voxelize.ImageParams`); a training config sets them from its data.
    """

    architecture: Architecture = "resnet"
    in_channels: int = _DEFAULT_IMAGE.num_channels
    input_size: int = _DEFAULT_IMAGE.length_voxels
    width: int = 2
    max_channels: int = 16
    schedule: Schedule = "log"
    block: str = "gamma"
    bottleneck: float | None = None
    band_limit: int = 2
    grid_size: int | None = None
    activation: str = "elu"
    repeats: int = 1
    kernel_size: int = 3
    conv: ConvForm = "dense"
    mixing: MixingSpec = field(default_factory=MixingSpec, metadata=flat_keys(
        mixing="name", mixing_depth="depth", mixing_options="options"))
    mixing_candidates: list[str] = field(default_factory=lambda: list(DEFAULT_CANDIDATES))
    mixing_batch: int = 8
    mixing_choices: dict[str, str] = field(default_factory=dict)
    depthwise: DepthwiseForm = "field"
    dense_stem: bool = True
    tensor_product: TensorProduct = "escnn"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; choose from {', '.join(ARCHITECTURES)}")
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"unknown block {self.block!r}; choose from {', '.join(BLOCK_TYPES)}")
        if self.input_size < 3 or self.input_size % 2 == 0:
            raise ValueError(
                f"input_size must be odd and >= 3 (rotations must map the grid onto itself), got {self.input_size}"
            )
        if self.bottleneck is not None and not 0 < self.bottleneck <= 1:
            raise ValueError(f"bottleneck must be in (0, 1] or null, got {self.bottleneck}")
        if self.band_limit < 1:
            raise ValueError(f"band_limit must be >= 1, got {self.band_limit}")
        if self.kernel_size not in (3, 5):
            raise ValueError(f"kernel_size must be 3 or 5, got {self.kernel_size}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown channel schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.conv not in CONV_FORMS:
            raise ValueError(f"unknown conv {self.conv!r}; choose from {', '.join(CONV_FORMS)}")
        if self.depthwise not in DEPTHWISE_FORMS:
            raise ValueError(f"unknown depthwise {self.depthwise!r}; choose from {', '.join(DEPTHWISE_FORMS)}")
        if self.tensor_product not in TENSOR_PRODUCTS:
            raise ValueError(f"unknown tensor_product {self.tensor_product!r}; "
                             f"choose from {', '.join(TENSOR_PRODUCTS)}")
        if not isinstance(self.mixing, MixingSpec):
            self.mixing = MixingSpec.parse(self.mixing) if isinstance(self.mixing, str) else MixingSpec(
                self.mixing.name, self.mixing.depth, self.mixing.options)
        if self.mixing.auto:
            if self.conv == "grid":
                raise ValueError("mixing 'auto' chooses among equivariant irrep mixings; the grid form takes a "
                                 "plugin (e.g. mixing: acdc)")
            if self.mixing_batch < 1:
                raise ValueError(f"mixing_batch must be >= 1, got {self.mixing_batch}")
            for text in [*self.mixing_candidates, *self.mixing_choices.values()]:
                candidate_spec(text)

    @property
    def resolved_grid_size(self) -> int:
        return self.grid_size if self.grid_size is not None else default_grid_size(self.band_limit)

    @property
    def conv_spec(self) -> ConvSpec:
        """How the convolutions are built (dense, or separable with this mixing)."""
        # mixing 'auto': dense blocks until each layer's choice replaces them
        return ConvSpec(self.conv, MixingSpec() if self.mixing.auto else self.mixing, self.depthwise)

    @property
    def stem_spec(self) -> ConvSpec:
        """The first convolution's form: dense when ``dense_stem``, else as the others."""
        return ConvSpec("dense") if self.dense_stem else self.conv_spec


@dataclass(frozen=True)
class ConvStep:
    """One convolution of a CNN plan: ``size_in -> size_out`` with a ``kernel_size`` cube."""

    size_in: int
    size_out: int
    stride: int
    padding: int
    kernel_size: int = 3


def _conv(size: int, stride: int, padding: int, kernel_size: int = 3) -> ConvStep:
    # A grid smaller than the kernel is finished by one unpadded convolution of its own size.
    kernel_size = min(kernel_size, size) if padding == 0 else kernel_size
    return ConvStep(size, conv_output_size(size, kernel_size, stride, padding), stride, padding, kernel_size)


def plan_no_downsample(size: int, kernel_size: int = 3) -> list[ConvStep]:
    """No down-sampling: unpadded convolutions until one voxel is left (21: ten 3x3x3 layers, five 5x5x5)."""
    steps = []
    while size > 1:
        steps.append(_conv(size, 1, 0, kernel_size))
        size = steps[-1].size_out
    return steps


def plan_shallow(size: int, repeats: int = 1, kernel_size: int = 3) -> list[ConvStep]:
    """Shallow (#3): as few layers as possible, alternating unpadded stride 1 and 2.

    21 -> 19 -> 9 -> 7 -> 3 -> 1 with 3x3x3 kernels.  A stride-2 step is taken only after a stride-1
    step (the first layer never down-samples) and only when it lands on an odd size.  The deep
    variant (``repeats > 1``) adds ``repeats - 1`` padded stride-1 convolutions before every step
    but the first (which stays unpadded, so zero means "empty space" there).
    """
    half = (kernel_size - 1) // 2
    steps = [_conv(size, 1, 0, kernel_size)]
    size, last_stride = steps[-1].size_out, 1
    while size > 1:
        steps.extend(_conv(size, 1, half, kernel_size) for _ in range(repeats - 1))
        k = min(kernel_size, size)
        strided = (size - k) % 2 == 0 and ((size - k) // 2 + 1) % 2 == 1
        last_stride = 2 if last_stride == 1 and strided else 1
        steps.append(_conv(size, last_stride, 0, kernel_size))
        size = steps[-1].size_out
    return steps


def plan_vgg(size: int, repeats: int, kernel_size: int = 3) -> list[ConvStep]:
    """VGG-like (#2): padded down-sampling.

    Unpadded convolutions until the size is ``2^k + 1`` (so zero still means "empty space" in the
    first layer), then per resolution ``repeats`` padded stride-1 convolutions and one padded
    stride-2 convolution down to 5, then unpadded convolutions to 1: 21 -> 19 -> 17 -> (17) -> 9
    -> (9) -> 5 -> 3 -> 1 with 3x3x3 kernels (21 -> 17 -> (17) -> 9 -> (9) -> 5 -> 1 with 5x5x5).
    """

    def is_pow2_plus_1(n: int) -> bool:
        return n >= 3 and (n - 1) & (n - 2) == 0

    half = (kernel_size - 1) // 2
    steps = [_conv(size, 1, 0, kernel_size)]
    size = steps[-1].size_out
    while size > 5 and not is_pow2_plus_1(size):
        steps.append(_conv(size, 1, 0, kernel_size))
        size = steps[-1].size_out
    while size > 5:
        steps.extend(_conv(size, 1, half, kernel_size) for _ in range(repeats))
        steps.append(_conv(size, 2, half, kernel_size))
        size = steps[-1].size_out
    while size > 1:
        steps.append(_conv(size, 1, 0, kernel_size))
        size = steps[-1].size_out
    return steps


def plan_resnet(size: int) -> list[int]:
    """Grid sizes of the ResNet: every block is followed by a stride-2 pool until <= 3 voxels.

    33 -> 17 -> 9 -> 5 -> 3, 21 -> 11 -> 5 -> 3.  The remaining voxels are averaged by the
    read-out, which commutes with rotations of a centred grid.
    """
    sizes = [size]
    while sizes[-1] > 3:
        sizes.append(conv_output_size(sizes[-1], 3, 2, aligned_pool_padding(sizes[-1], 3, 2)))
    return sizes


#: Tensors escnn expands from the weights and caches in eval mode: derived, so a checkpoint need not hold them.
CACHED_BUFFERS = ("filter", "expanded_bias", "matrix")


class MixingRecord(nn.Module):
    """The mixing each layer of a ``mixing: auto`` encoder got, kept in its ``state_dict`` (extra
    state), so a checkpoint names them; loading into an encoder built with other choices fails
    with both lists instead of a shape mismatch."""

    def __init__(self, choices: dict[str, str]) -> None:
        super().__init__()
        self.choices = dict(choices)

    def get_extra_state(self) -> dict[str, dict[str, str]]:
        return {"mixing_choices": dict(self.choices)}

    def set_extra_state(self, state: dict[str, dict[str, str]]) -> None:
        saved = dict(state.get("mixing_choices", {}))
        if saved != self.choices:
            raise ValueError(f"the weights were trained with mixing choices {saved}, this encoder was built with "
                             f"{self.choices}; build it with encoder.mixing_choices set to the saved ones")

    def extra_repr(self) -> str:
        return describe_choices(self.choices)


class Encoder(nn.Module):
    """An escnn body plus the invariant read-out; takes and returns plain tensors.

    ``forward(x: (B, in_channels, L, L, L)) -> (B, out_features)`` is invariant to rotations of the
    input grid.  :meth:`fields` returns the spatially pooled final field ``(B, field_features)``
    instead, which is *equivariant* (it rotates with the input): tasks whose answer depends on
    the orientation, like the direction of a neighbor, need it.  :meth:`export` gives the same
    functions as plain PyTorch modules.
    """

    def __init__(self, config: EncoderConfig, body: enn.SequentialModule, out_type: enn.FieldType) -> None:
        super().__init__()
        self.config = config
        self.in_type = trivial_field_type(config.in_channels)
        self.body = body
        self.out_type = out_type
        self.readout = InvariantReadout(out_type)
        self.out_features = self.readout.out_features
        self.field_features = out_type.size
        #: Seconds of every candidate per mixing layer, when ``mixing: auto`` measured them in this build.
        self.mixing_seconds: dict[str, dict[str, float]] = {}

    def train(self, mode: bool = True) -> Encoder:
        """Switch mode; in eval mode escnn caches expanded filters, which are detached here.

        The cached tensors would otherwise keep an autograd graph to the weights, which breaks
        ``copy.deepcopy`` (and so :func:`structlayers.collapse`) and a second backward pass.
        """
        super().train(mode)
        if not mode:
            for module in self.body.modules():
                for name in CACHED_BUFFERS:
                    value = getattr(module, name, None)
                    if isinstance(value, Tensor) and value.requires_grad:
                        setattr(module, name, value.detach())
        return self

    def fields(self, x: Tensor) -> Tensor:
        """Spatial mean of the final field, ``(B, field_features)``: equivariant, not invariant."""
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input (B, {self.config.in_channels}, L, L, L), got {tuple(x.shape)}")
        return self.body(enn.GeometricTensor(x, self.in_type)).tensor.flatten(2).mean(dim=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.fields(x))

    def export(self) -> nn.Module:
        """A plain-PyTorch copy for inference (see :func:`atompaint.encoders.export.export_encoder`)."""
        from atompaint.encoders.export import export_encoder

        return export_encoder(self)


def resnet_plan(config: EncoderConfig) -> tuple[list[int], list[int]]:
    """The ResNet's grid sizes and channels per resolution (the stem's first)."""
    sizes = plan_resnet(config.input_size)
    return sizes, plan_channels(config.width, config.max_channels, sizes, [2] * (len(sizes) - 1), config.schedule)


def cnn_plan(config: EncoderConfig) -> tuple[list[ConvStep], list[int]]:
    """The convolutions of a plain architecture (no-downsample, shallow, VGG) and their channels."""
    k = config.kernel_size
    if config.architecture == "no-downsample":
        steps = plan_no_downsample(config.input_size, k)
    elif config.architecture == "shallow":
        steps = plan_shallow(config.input_size, config.repeats, k)
    else:
        steps = plan_vgg(config.input_size, config.repeats, k)
    return steps, plan_channels(config.width, config.max_channels, [s.size_out for s in steps],
                                [s.stride for s in steps[1:]], config.schedule)


def mid_channels(config: EncoderConfig, out_channels: int) -> int:
    """The channels between a residual block's two convolutions."""
    return out_channels if config.bottleneck is None else max(1, round(out_channels * config.bottleneck))


def build_grid_encoder(config: EncoderConfig) -> GridEncoder:
    """The grid-domain form of ``config``'s architecture (:mod:`atompaint.encoders.grid`): a lifting
    convolution, then separable grid convolutions (ResNet: residual blocks and anti-aliased pools)
    with batch norm and ``activation`` on every grid sample."""
    k, act, mixing = config.kernel_size, config.activation, config.conv_spec.mixing
    modules: list[nn.Module] = []
    if config.architecture == "resnet":
        sizes, channels = resnet_plan(config)
        modules += [GridLift(config.in_channels, channels[0], k, padding=(k - 1) // 2), GridBatchNorm(channels[0]),
                    GridActivation(act)]
        for size, c_in, c_out in zip(sizes[:-1], channels, channels[1:]):
            modules += [GridResBlock(c_in, mid_channels(config, c_out), c_out, kernel_size=k, activation=act,
                                     mixing=mixing), GridPool(size)]
    else:
        steps, channels = cnn_plan(config)
        for i, (step, c_out) in enumerate(zip(steps, channels)):
            options = dict(stride=step.stride, padding=step.padding)
            conv = (GridLift(config.in_channels, c_out, step.kernel_size, **options) if i == 0 else
                    GridSeparableConv(channels[i - 1], c_out, step.kernel_size, mixing=mixing, **options))
            modules += [conv, GridBatchNorm(c_out), GridActivation(act)]
    return GridEncoder(config, nn.Sequential(*modules), channels[-1])


def build_encoder(config: EncoderConfig) -> Encoder | GridEncoder:
    """Build the encoder described by ``config``."""
    if config.conv == "grid":
        return build_grid_encoder(config)
    band, grid, k = config.band_limit, config.resolved_grid_size, config.kernel_size
    in_type = trivial_field_type(config.in_channels)
    conv, stem = config.conv_spec, config.stem_spec
    modules: list[enn.EquivariantModule] = []

    if config.architecture == "resnet":
        sizes, channels = resnet_plan(config)
        ftype = spectral_field_type(channels[0], band)
        modules.append(conv_bn_act(in_type, ftype, band_limit=band, grid_size=grid, activation=config.activation,
                                   kernel_size=k, padding=(k - 1) // 2, conv=stem))
        for size, out_channels in zip(sizes[:-1], channels[1:]):
            out_type = spectral_field_type(out_channels, band)
            mid_type = spectral_field_type(mid_channels(config, out_channels), band)
            modules.append(ResBlock(ftype, mid_type, out_type, block=config.block, band_limit=band, grid_size=grid,
                                    kernel_size=k, conv=conv, tensor_product=config.tensor_product))
            modules.append(aligned_blur_pool(out_type, size))
            ftype = out_type
    else:
        steps, channels = cnn_plan(config)
        ftype = in_type
        for i, (step, out_channels) in enumerate(zip(steps, channels)):
            out_type = spectral_field_type(out_channels, band)
            modules.append(conv_bn_act(
                ftype, out_type, band_limit=band, grid_size=grid, activation=config.activation,
                kernel_size=step.kernel_size, stride=step.stride, padding=step.padding, conv=stem if i == 0 else conv,
            ))
            ftype = out_type

    encoder = Encoder(config, enn.SequentialModule(*modules), ftype)
    if config.mixing.auto and config.conv != "dense":
        choices = dict(config.mixing_choices)
        if not choices:
            example = torch.zeros(1, config.in_channels, *3 * [config.input_size])
            choices, encoder.mixing_seconds = choose_mixing(encoder, example, config.mixing_candidates,
                                                            config.mixing_batch)
        apply_mixing_choices(encoder, choices)
        encoder.config = replace(config, mixing_choices=choices)
        encoder.mixing_record = MixingRecord(choices)
    return encoder
