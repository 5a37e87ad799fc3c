"""``structlayers count``: parameters and FLOPs of a model, before and after replacement, and what
FlopCounterMode reports for the same forward pass."""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from structlayers.accounting import CountReport, count
from structlayers.cli.arguments import add_surgery_arguments, init_options, layer_spec
from structlayers.clikit import add_json, check_output_path, write_output
from structlayers.lab.models import build_model, example_input, get_spec, load_weights, parse_model_options
from structlayers.surgery import replace
from structlayers.utils.report import format_table, human
from structlayers.utils.tracing import run_example

NAME = "count"
HELP = ("parameter / FLOP table of a model (resnet18, wrn-28-10, ..., timm:<name>, torchvision:<name>) before and "
        "after replacing layers")

ANALYTIC_NOTE = ("Every figure in the table is analytic (structlayers.count): each layer plugin's flop_count(), "
                 "2 x MACs for convolutions and Linear layers, plus bias and norm operations.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_surgery_arguments(p, "replace the targets by this layer (e.g. acdc, afdf, lowrank)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass counted (default 1)")
    p.add_argument("--per-module", action="store_true", help="also print the per-module tables")
    add_json(p, "write both counts and the replacement report as JSON ('-': standard output)")


def flop_counter_total(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs seen by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass."""
    with FlopCounterMode(display=False) as counter:
        run_example(model, x)
    return counter.get_total_flops()


def _counter_line(label: str, seen: int, report: CountReport) -> str:
    plugins = sum(r.plugin for r in report.rows)
    agrees = "agrees with" if seen == report.total_counter_flops else "DIFFERS from"
    return (f"FlopCounterMode on the {label}: {human(seen)} FLOPs ({seen:,}), {agrees} count()'s figure for it "
            f"({report.total_counter_flops:,}: the matmul FLOPs of standard modules, plus the full analytic FLOPs "
            f"of the {plugins} layer plugin(s), which report themselves to FlopCounterMode)")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_output_path(args.json, "--json")
    layer = layer_spec(args.replace, args, args.depth) if args.replace else None
    spec = get_spec(args.model)
    torch.manual_seed(0)
    model = build_model(args.model, **parse_model_options(args.model, dict(args.model_option)))
    if args.weights:
        load_weights(model, args.weights)
    x = example_input(args.model, args.batch_size, model)
    before = count(model, x)
    reference = flop_counter_total(model, x)
    print(f"{args.model}: {spec.description}; input {tuple(x.shape)}")
    if args.per_module:
        print(before.to_text())
    rows = [("dense" if not spec.structured else "as built", human(before.total_params), human(before.total_flops),
             human(before.total_matmul_flops), human(before.total_counter_flops))]
    record: dict = {"model": args.model, "input_shape": list(x.shape), "before": json.loads(before.to_json()),
                    "flop_counter_mode": reference, "analytic": ANALYTIC_NOTE}
    lines = [_counter_line("dense model" if not spec.structured else "model", reference, before)]
    if layer is not None:
        new, report = replace(model, layer.name, args.targets, skip_first=args.skip_first, skip_last=args.skip_last,
                              example_input=x, depth=layer.depth, **init_options(args), **layer.options)
        after = count(new, x)
        seen_after = flop_counter_total(new, x)
        print()
        print(report.to_text())
        if args.per_module:
            print()
            print(after.to_text())
        label = layer.label
        rows.append((f"replaced ({label})", human(after.total_params), human(after.total_flops),
                     human(after.total_matmul_flops), human(after.total_counter_flops)))
        pairs = ((after.total_params, before.total_params), (after.total_flops, before.total_flops),
                 (after.total_matmul_flops, before.total_matmul_flops),
                 (after.total_counter_flops, before.total_counter_flops))
        rows.append(("ratio", *(f"{a / b:.3g}" if b else "-" for a, b in pairs)))
        record.update(after=json.loads(after.to_json()), replace=json.loads(report.to_json()),
                      flop_counter_mode_after=seen_after)
        lines.append(_counter_line("replaced model", seen_after, after))
    print()
    print(format_table(("model", "params", "FLOPs", "matmul FLOPs", "FlopCounterMode"), rows, "lrrrr"))
    print(f"\n{ANALYTIC_NOTE} The 'FlopCounterMode' column is the part of them that FlopCounterMode reports.")
    print("\n".join(lines))
    write_output(args.json, json.dumps(record, indent=2), "the counts")
    return 0
