"""``atompaint evaluate CHECKPOINT``: score a neighbor-location checkpoint on its validation set,
with view B as made, empty, or taken from another example (controls)."""

from __future__ import annotations

import argparse
from pathlib import Path

from structlayers.clikit import add_json, check_output_path, key_value, write_output

NAME = "evaluate"
HELP = ("Accuracy of a neighbor-loc checkpoint on its validation set, with view B real, empty or shuffled "
        "(controls), at one or more paddings.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by `atompaint train neighbor-loc`")
    parser.add_argument("--padding", type=float, action="append", default=None, metavar="A",
                        help="padding between the views in A (repeatable; default: the one trained with)")
    parser.add_argument("--set", dest="overrides", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="any config value by its dotted key, e.g. data.val_size=512 (repeatable)")
    parser.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    add_json(parser)


def run(args: argparse.Namespace) -> int:
    from atompaint.tasks.neighbor_loc.evaluate import evaluate_checkpoint, format_results, to_json
    from atompaint.training.checkpoints import read_task_checkpoint

    read_task_checkpoint(args.checkpoint, "neighbor-loc")
    if args.batch_size < 1:
        raise ValueError("--batch-size must be positive")
    check_output_path(args.json, "JSON")
    report = evaluate_checkpoint(args.checkpoint, paddings_A=args.padding, overrides=dict(args.overrides),
                                 batch_size=args.batch_size)
    if args.json is None or str(args.json) != "-":
        print(format_results(report))
    write_output(args.json, to_json(report), "the evaluation")
    return 0
