"""``atompaint count MODEL_CONFIG``: parameters, FLOPs (per module type) and peak memory, dense vs
separable vs separable + structured-mixing encoder (or dense vs compressed head)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from atompaint.cli.commands._encoder_flags import add_encoder_flags, encoder_overrides
from structlayers.clikit import check_output_path, write_output

NAME = "count"
HELP = ("Parameters and FLOPs of encoder (per module type), MLP and whole model, dense vs separable vs "
        "separable + structured mixing encoder (or dense vs compressed head), and measured peak memory.")


class _JsonPath(argparse.Action):
    """``--json PATH`` (``-``: standard output); a bare ``--json``, the earlier spelling, still
    prints to standard output, with a deprecation warning."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is None:
            warnings.warn("a bare --json is deprecated and will be removed in the next release; use --json -",
                          FutureWarning, stacklevel=2)
            print(f"{parser.prog}: warning: a bare --json is deprecated; use --json - (standard output) "
                  "or --json PATH", file=sys.stderr)
            values = Path("-")
        setattr(namespace, self.dest, values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="MODEL_CONFIG",
                        help="a neighbor-loc YAML config (see experiments/neighbor_loc/)")
    parser.add_argument("--compare", choices=("encoders", "heads"), default="encoders",
                        help="columns: encoder variants (dense / separable / separable + the mixing of the config "
                             "or --mixing, default acdc x2) or head variants (dense / compressed / collapsed) "
                             "(default: encoders)")
    add_encoder_flags(parser.add_argument_group("encoder overrides (each flag left out keeps the config's value)"))
    parser.add_argument("--head-layer", default=None, metavar="LAYER",
                        help="compressed head layer, NAME[:depth=N][:KEY=VALUE...] (default: the config's head if "
                             "it is not dense, else acdc)")
    parser.add_argument("--head-depth", type=int, default=None,
                        help="stack depth of the compressed head layer (default: 12 for the acdc default)")
    parser.add_argument("--memory-batch-size", type=int, default=None,
                        help="batch size of the measured fwd+bwd pass (0: skip; default 2)")
    parser.add_argument("--json", type=Path, nargs="?", action=_JsonPath, metavar="PATH",
                        help="write the table as JSON ('-': standard output, instead of the text table)")


def run(args: argparse.Namespace) -> int:
    from atompaint.tasks.neighbor_loc.count import build_count_table

    if args.memory_batch_size is not None and args.memory_batch_size < 0:
        raise ValueError("--memory-batch-size must be >= 0")
    if args.head_depth is not None and args.head_depth < 1:
        raise ValueError("--head-depth must be positive")
    check_output_path(args.json, "JSON")
    options: dict[str, Any] = {"head_layer": args.head_layer, "head_depth": args.head_depth,
                               "compare": args.compare, "encoder_changes": encoder_overrides(args)}
    if args.memory_batch_size is not None:
        options["memory_batch_size"] = args.memory_batch_size or None
    table = build_count_table(args.config, **options)
    if args.json is None or str(args.json) != "-":
        print(table.to_text())
    write_output(args.json, table.to_json(), "the table")
    return 0
