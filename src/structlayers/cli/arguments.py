"""Argument types and groups shared by several subcommands (kept out of ``cli.commands`` so that
importing them never imports another subcommand and its dependencies)."""

from __future__ import annotations

import argparse
import ast
from typing import Any

from structlayers.surgery import DEFAULT_KINDS


def layer_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with the value read as a Python literal where it is one (``3``, ``True``,
    ``"riffle"``), else kept as the string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"layer options are KEY=VALUE, got {text!r}")
    try:
        parsed: Any = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return key.strip(), parsed


def add_replace_arguments(group: argparse._ActionsContainer, replace_help: str) -> None:
    """``--replace``, ``--targets``, ``--skip-first``, ``--skip-last`` and ``-o``: what
    :func:`structlayers.surgery.replace` swaps in, where, and with which layer options."""
    group.add_argument("--replace", metavar="LAYER", help=replace_help)
    group.add_argument("--targets", nargs="+", default=list(DEFAULT_KINDS), metavar="TARGET",
                       help="kinds (linear, pointwise, separable, all) and/or module-name globs such as "
                            f"'layer3.*' (default: {' '.join(DEFAULT_KINDS)})")
    group.add_argument("--skip-first", type=int, default=0, help="keep the model's first N layers dense")
    group.add_argument("--skip-last", type=int, default=0, help="keep the model's last N layers dense")
    group.add_argument("--option", "-o", type=layer_option, action="append", default=[], metavar="KEY=VALUE",
                       help="layer option, e.g. -o init=identity -o inner_shuffle=riffle")
