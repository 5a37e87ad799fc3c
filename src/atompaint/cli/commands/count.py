"""``atompaint count MODEL_CONFIG``: parameters, FLOPs and peak memory, dense vs compressed head."""

from __future__ import annotations

import argparse

NAME = "count"
HELP = "Parameters and FLOPs of encoder, MLP and whole model (dense vs compressed head), and measured peak memory."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="MODEL_CONFIG", help="a neighbor-loc YAML config (see experiments/neighbor_loc/)")
    parser.add_argument("--head-layer", default=None, help="compressed head layer (default: the config's, or acdc)")
    parser.add_argument("--head-depth", type=int, default=None, help="stack depth of the compressed head layer (default 12)")
    parser.add_argument("--memory-batch-size", type=int, default=2, help="batch size of the measured fwd+bwd pass (0: skip)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from atompaint.accounting import build_count_table

    if args.memory_batch_size < 0:
        raise ValueError("--memory-batch-size must be >= 0")
    if args.head_depth is not None and args.head_depth < 1:
        raise ValueError("--head-depth must be positive")
    table = build_count_table(
        args.config,
        head_layer=args.head_layer,
        head_depth=args.head_depth,
        memory_batch_size=args.memory_batch_size or None,
    )
    print(table.to_json() if args.json else table.to_text())
    return 0
