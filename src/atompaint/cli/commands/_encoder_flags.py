"""The encoder flags that ``atompaint train`` and ``atompaint count`` share: the convolution form and
the structured mixing, with defaults read from :class:`~atompaint.encoders.EncoderConfig`."""

from __future__ import annotations

import argparse
from typing import Any

from structlayers.clikit import add_config_arguments, key_value, overrides_from_args

#: EncoderConfig fields with a flag generated from their type (``--mixing`` is text, read by the config,
#: and its flat aliases ``mixing_depth`` and ``mixing_options`` are ``--mixing-depth`` and ``--mixing-option``).
FIELDS = ("conv", "depthwise", "dense_stem", "tensor_product", "kernel_size")
_HELP = {
    "conv": "encoder.conv: dense (escnn R3Conv) or separable (depthwise steerable conv + structured mixing)",
    "depthwise": "encoder.depthwise: the separable convolutions' depthwise step, one steerable kernel per field "
                 "or per irrep copy (fewer FLOPs, smaller function class)",
    "dense_stem": "encoder.dense_stem: keep the first convolution dense in a separable encoder",
    "tensor_product": "encoder.tensor_product: escnn or clebsch-gordan (same function class, fewer FLOPs)",
    "kernel_size": "encoder.kernel_size: 3 or 5",
}


def add_encoder_flags(container: argparse._ActionsContainer) -> None:
    """``--conv``, ``--mixing``, ``--mixing-depth``, ``--mixing-option KEY=VALUE``, ``--depthwise``,
    ``--dense-stem``, ``--tensor-product``, ``--kernel-size``; a flag left out keeps the config's value."""
    from atompaint.encoders import EncoderConfig

    add_config_arguments(container, EncoderConfig, only=FIELDS, dest_prefix="encoder.", help=_HELP, overrides=True)
    container.add_argument("--mixing", dest="encoder.mixing", metavar="LAYER",
                           help="encoder.mixing: the structlayers layer of each per-irrep mixing block, "
                                "NAME[:depth=N][:KEY=VALUE...] (dense, acdc:depth=2, lowrank:rank=4, auto, ...; "
                                f"default: {EncoderConfig().mixing})")
    container.add_argument("--mixing-depth", dest="encoder.mixing_depth", type=int, metavar="N",
                           help="encoder.mixing_depth: stack depth of the mixing layer (the depth= of --mixing; "
                                "default: the config's)")
    container.add_argument("--mixing-option", dest="mixing_options", type=key_value, action="append", default=[],
                           metavar="KEY=VALUE", help="encoder.mixing_options: an option of the mixing plugin "
                                                     "(repeatable, e.g. shuffle=random)")


def encoder_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``encoder.*`` config keys the flags set.  A new ``--mixing`` is the whole layer (its text
    form's depth and options, no others), which ``--mixing-depth`` and ``--mixing-option`` then update."""
    from atompaint.encoders import EncoderConfig

    changes = overrides_from_args(EncoderConfig, args, "encoder.", "encoder.")  # --mixing included
    if getattr(args, "encoder.mixing_depth") is not None:
        changes["encoder.mixing_depth"] = getattr(args, "encoder.mixing_depth")
    if args.mixing_options:
        changes["encoder.mixing_options"] = dict(args.mixing_options)
    return changes
