"""``structlayers replace``: swap a model's layers for structured ones, optionally starting from its
trained weights (``--weights``, ``--init project|fit``), report the change and the accuracy right
after surgery (``--evaluate``), and write the replaced model's ``state_dict``."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from structlayers.cli.arguments import add_surgery_arguments, init_options, layer_spec
from structlayers.clikit import add_json, add_out, check_output_path, write_output
from structlayers.lab.models import build_model, example_input, load_weights, parse_model_options
from structlayers.surgery import replace

NAME = "replace"
HELP = "replace a model's layers by a structured layer (from trained weights with --weights and --init)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_surgery_arguments(p, "the structured layer to swap in (required), e.g. acdc, afdf, lowrank")
    p.add_argument("--evaluate", choices=["mnist", "cifar10"],
                   help="validation accuracy of the model before and right after surgery on this dataset")
    p.add_argument("--data-dir", help="dataset folder for --evaluate (default: $STRUCTLAYERS_DATA / packaged MNIST)")
    p.add_argument("--seed", type=int, default=0, help="seed of the replacements' random parts (default 0)")
    add_out(p, "write the replaced model's state_dict here (torch.save)")
    add_json(p, "write the replacement report (and accuracies) as JSON ('-': standard output)")


def _accuracy(model: torch.nn.Module, task: str, data_dir: str | None) -> float:
    from structlayers.lab.data.datamodule import DATAMODULES, DataConfig
    from structlayers.lab.training.run import evaluate

    dm = DATAMODULES[task](DataConfig(data_dir=data_dir))
    dm.setup("fit")
    preds = evaluate(model, dm, torch.device("cpu"))
    return float((preds == torch.from_numpy(dm.splits.val_labels)).float().mean())


def run(args: argparse.Namespace) -> int:
    if not args.replace:
        raise ValueError("--replace LAYER is required")
    layer = layer_spec(args.replace, args, args.depth)
    check_output_path(args.out, "--out")
    check_output_path(args.json, "--json")
    torch.manual_seed(args.seed)
    model = build_model(args.model, **parse_model_options(args.model, dict(args.model_option)))
    if args.weights:
        load_weights(model, args.weights)
    elif args.init != "scratch":
        print(f"structlayers replace: warning: --init {args.init} without --weights {args.init}s the replacements "
              f"from {args.model}'s random initialisation: there are no trained weights", file=sys.stderr)
    model.eval()
    x = example_input(args.model, 1, model)
    torch.manual_seed(args.seed)
    new, report = replace(model, layer.name, args.targets, skip_first=args.skip_first, skip_last=args.skip_last,
                          example_input=x, depth=layer.depth, **init_options(args), **layer.options)
    print(report.to_text())
    record = {"model": args.model, "weights": str(args.weights) if args.weights else None, "layer": args.replace,
              "depth": layer.depth, "init": args.init, "report": json.loads(report.to_json())}
    if args.evaluate:
        record["accuracy_before"] = _accuracy(model, args.evaluate, args.data_dir)
        record["accuracy_after"] = _accuracy(new, args.evaluate, args.data_dir)
        print(f"\nvalidation accuracy ({args.evaluate}): {record['accuracy_before']:.4f} before, "
              f"{record['accuracy_after']:.4f} right after surgery (init {args.init}, no training)")
    if args.out:
        torch.save(new.state_dict(), args.out)
        print(f"wrote the replaced model's state_dict to {args.out}")
    write_output(args.json, json.dumps(record, indent=2), "the replacement report")
    return 0
