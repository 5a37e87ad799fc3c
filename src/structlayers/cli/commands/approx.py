"""``structlayers approx``: the matrix-approximation experiment."""

from __future__ import annotations

import argparse
import sys

from structlayers.cli.arguments import add_layer_options, layer_options
from structlayers.clikit import add_json, add_no_progress, add_plot, check_output_path, write_output
from structlayers.lab.approx import ApproxConfig, run_approx
from structlayers.lab.approx.plot import plot_error_vs_params
from structlayers.surgery.fit import OPTIMIZERS
from structlayers.transforms.shuffle import SHUFFLES

NAME = "approx"
HELP = "fit a layer (or a stack of it) to random dense matrices and compare with the truncated SVD"


def int_list(text: str, minimum: int = 1) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not values or min(values) < minimum:
        raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, got {text!r}")
    return values


def seed_list(text: str) -> tuple[int, ...]:
    """``3`` means seeds 0, 1, 2; ``0,5,9`` means exactly those."""
    if "," in text:
        return int_list(text, minimum=0)
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a comma list of seeds, got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError("need at least one seed")
    return tuple(range(count))


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ApproxConfig()
    p.add_argument("--layer", default=d.layer,
                   help=f"registered layer to fit (see `structlayers layers`; default {d.layer})")
    p.add_argument("--n", type=int, default=d.n, help=f"size of the square target matrix (default {d.n})")
    p.add_argument("--depth", type=int_list, default=d.depths,
                   help="stack depth, or a list such as 1,2,4,8,16,32 (default: the layer itself)")
    p.add_argument("--shuffle", choices=SHUFFLES, default=d.shuffle,
                   help=f"shuffle between stacked factors (default {d.shuffle})")
    p.add_argument("--seeds", type=seed_list, default=d.seeds,
                   help=f"number of seeds, or a comma list (default {len(d.seeds)})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help=f"default {d.optimizer}")
    p.add_argument("--steps", type=int, default=d.steps,
                   help=f"optimizer steps (L-BFGS iterations) per fit (default {d.steps})")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (adam 1e-2, lbfgs 1.0 by default)")
    add_layer_options(p)
    add_json(p, old="--out")
    add_plot(p, "write error against parameters (PNG or SVG)")
    add_no_progress(p)


def run(args: argparse.Namespace) -> int:
    if args.n < 2:
        raise ValueError(f"--n must be at least 2, got {args.n}")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    check_output_path(args.json, "--json")
    check_output_path(args.plot, "--plot")
    # The options must suit the layer at every depth fitted (a stack's own options need a depth).
    options = [layer_options(args.layer, args, depth) for depth in args.depth][-1]
    config = ApproxConfig(
        layer=args.layer, n=args.n, depths=args.depth, shuffle=args.shuffle, seeds=args.seeds,
        optimizer=args.optimizer, steps=args.steps, lr=args.lr, layer_options=options,
    )
    result = run_approx(config, progress=not args.no_progress)
    if not result.runs:
        print("interrupted before any fit finished", file=sys.stderr)
        return 130
    print(result.to_text())
    write_output(args.json, result.to_json(), "the results")
    if args.plot:
        plot_error_vs_params(result, args.plot)
        print(f"wrote the plot to {args.plot}", file=sys.stderr)
    return 130 if result.interrupted else 0
