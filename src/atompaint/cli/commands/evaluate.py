"""``atompaint evaluate CHECKPOINT``: score a neighbor-location checkpoint on its validation set,
with views A and B as made, emptied or taken from another example, and the zero-parameter density
rules, beside the construction's chance and the lift over the best of them; or a residue-env checkpoint
on a held-out split, beside the class prior, an empty environment and a shuffled-label model."""

from __future__ import annotations

import argparse
from pathlib import Path

from structlayers.clikit import add_json, add_list, check_output_path, key_value, write_output

NAME = "evaluate"
HELP = ("Accuracy of a neighbor-loc checkpoint on its validation set, with view A or B emptied or shuffled and "
        "the density rules as controls (lift over the best), at one or more paddings; or of a residue-env "
        "checkpoint, with its controls.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by `atompaint train neighbor-loc`")
    add_list(parser, "--padding", item=float, default=None, metavar="A",
             help="paddings between the views in A, e.g. 2 4 (default: the one trained with)")
    parser.add_argument("--set", dest="overrides", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="any config value by its dotted key, e.g. data.val_size=512 (repeatable)")
    parser.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    residue = parser.add_argument_group("residue-env checkpoints")
    residue.add_argument("--split", choices=("val", "test"), default="val", help="the held-out split to score")
    residue.add_argument("--shuffled-labels", type=Path, default=None, metavar="CKPT",
                         help="the same model trained with data.shuffle_labels=true, scored as a control")
    residue.add_argument("--plot", type=Path, default=None, metavar="PNG", help="write the confusion matrix here")
    add_json(parser)


def run(args: argparse.Namespace) -> int:
    from atompaint.tasks.neighbor_loc.evaluate import evaluate_checkpoint, format_results, to_json
    from atompaint.training.checkpoints import read_task_checkpoint
    from structlayers.lightning.checkpoints import load_checkpoint, stored_config

    if (stored_config(load_checkpoint(args.checkpoint)) or {}).get("task") == "residue-env":
        return _run_residue_env(args)
    read_task_checkpoint(args.checkpoint, "neighbor-loc")
    if args.split != "val" or args.shuffled_labels is not None or args.plot is not None:
        raise ValueError("--split, --shuffled-labels and --plot apply to residue-env checkpoints only")
    if args.batch_size < 1:
        raise ValueError("--batch-size must be positive")
    check_output_path(args.json, "JSON")
    report = evaluate_checkpoint(args.checkpoint, paddings_A=args.padding, overrides=dict(args.overrides),
                                 batch_size=args.batch_size)
    if args.json is None or str(args.json) != "-":
        print(format_results(report))
    write_output(args.json, to_json(report), "the evaluation")
    return 0


def _run_residue_env(args: argparse.Namespace) -> int:
    from atompaint.tasks.residue_env.evaluate import evaluate_checkpoint, format_results, plot_confusion, to_json

    if args.padding:
        raise ValueError("--padding applies to neighbor-loc checkpoints only")
    if args.batch_size < 1:
        raise ValueError("--batch-size must be positive")
    check_output_path(args.json, "JSON")
    check_output_path(args.plot, "plot", (".png",))
    report = evaluate_checkpoint(args.checkpoint, split=args.split, shuffled_checkpoint=args.shuffled_labels,
                                 overrides=dict(args.overrides), batch_size=args.batch_size)
    if args.json is None or str(args.json) != "-":
        print(format_results(report))
    write_output(args.json, to_json(report), "the evaluation")
    if args.plot is not None:
        plot_confusion(report, args.plot)
    return 0
