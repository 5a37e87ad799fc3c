"""``structlayers count``: parameters and FLOPs of a built-in model, before and after replacement."""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from structlayers.accounting import count
from structlayers.cli.arguments import add_model_options, add_replace_arguments, layer_options
from structlayers.clikit import add_json, check_output_path, write_output
from structlayers.lab.models import MODELS, build_model, example_input, get_spec, parse_model_options
from structlayers.report import format_table, human
from structlayers.surgery import replace
from structlayers.tracing import run_example

NAME = "count"
HELP = "parameter / FLOP table of a built-in model (resnet18, wrn-28-10, ...) before and after replacing layers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=sorted(MODELS), help="built-in model")
    add_replace_arguments(p, "replace the targets by this layer (e.g. acdc, afdf, lowrank)")
    p.add_argument("--depth", type=int, help="with --replace: a stack of DEPTH factors of LAYER")
    add_model_options(p)
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass counted (default 1)")
    p.add_argument("--per-module", action="store_true", help="also print the per-module tables")
    add_json(p, "write both counts and the replacement report as JSON ('-': standard output)")


def flop_counter_total(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs seen by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass."""
    with FlopCounterMode(display=False) as counter:
        run_example(model, x)
    return counter.get_total_flops()


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_output_path(args.json, "--json")
    spec = get_spec(args.model)
    torch.manual_seed(0)
    model = build_model(args.model, **parse_model_options(args.model, dict(args.model_option)))
    x = example_input(args.model, args.batch_size)
    before = count(model, x)
    reference = flop_counter_total(model, x)
    print(f"{args.model}: {spec.description}; input {tuple(x.shape)}")
    if args.per_module:
        print(before.to_text())
    rows = [("dense" if not spec.structured else "as built", human(before.total_params), human(before.total_flops),
             human(before.total_matmul_flops))]
    record: dict = {"model": args.model, "input_shape": list(x.shape), "before": json.loads(before.to_json()),
                    "flop_counter_mode": reference}
    if args.replace:
        new, report = replace(model, args.replace, args.targets, skip_first=args.skip_first, skip_last=args.skip_last,
                              example_input=x, depth=args.depth, **layer_options(args.replace, args, args.depth))
        after = count(new, x)
        print()
        print(report.to_text())
        if args.per_module:
            print()
            print(after.to_text())
        label = f"{args.replace}" + (f" x{args.depth}" if args.depth else "")
        rows.append((f"replaced ({label})", human(after.total_params), human(after.total_flops),
                     human(after.total_matmul_flops)))
        rows.append(("ratio", f"{after.total_params / before.total_params:.3g}",
                     f"{after.total_flops / before.total_flops:.3g}",
                     f"{after.total_matmul_flops / before.total_matmul_flops:.3g}"))
        record.update(after=json.loads(after.to_json()), replace=json.loads(report.to_json()))
    print()
    print(format_table(("model", "params", "FLOPs", "matmul FLOPs"), rows, "lrrr"))
    agrees = "agrees with" if reference == before.total_matmul_flops else "DIFFERS from"
    print(f"\nFlopCounterMode on the {'dense ' if not spec.structured else ''}model: {human(reference)} FLOPs, "
          f"{agrees} count()'s matmul FLOPs ({before.total_matmul_flops:,})")
    write_output(args.json, json.dumps(record, indent=2), "the counts")
    return 0
