"""``structlayers approx``: the matrix-approximation experiment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from structlayers.approx import ApproxConfig, run_approx
from structlayers.approx.plot import plot_error_vs_params
from structlayers.cli.arguments import layer_option
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
    p.add_argument("--layer", default="acdc", help="registered layer to fit (see `structlayers layers`)")
    p.add_argument("--n", type=int, default=64, help="size of the square target matrix (default 64)")
    p.add_argument("--depth", type=int_list, default=(1,), help="stack depth, or a list such as 1,2,4,8,16,32")
    p.add_argument("--shuffle", choices=SHUFFLES, default="riffle", help="shuffle between stacked factors")
    p.add_argument("--seeds", type=seed_list, default=(0, 1, 2), help="number of seeds, or a comma list (default 3)")
    p.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps (L-BFGS iterations) per fit")
    p.add_argument("--lr", type=float, default=None, help="learning rate (adam 1e-2, lbfgs 1.0 by default)")
    p.add_argument("--option", "-o", type=layer_option, action="append", default=[], metavar="KEY=VALUE",
                   help="extra layer option, e.g. -o init=identity -o inner_shuffle=riffle")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    p.add_argument("--plot", type=Path, help="write error against parameters (PNG or SVG)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.n < 2:
        raise ValueError(f"--n must be at least 2, got {args.n}")
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    config = ApproxConfig(
        layer=args.layer, n=args.n, depths=args.depth, shuffle=args.shuffle, seeds=args.seeds,
        optimizer=args.optimizer, steps=args.steps, lr=args.lr, layer_options=dict(args.option),
    )
    result = run_approx(config, progress=not args.no_progress)
    if not result.runs:
        print("interrupted before any fit finished", file=sys.stderr)
        return 130
    print(result.to_text())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(result.to_json())
        print(f"wrote {args.out}")
    if args.plot:
        plot_error_vs_params(result, args.plot)
        print(f"wrote {args.plot}")
    return 130 if result.interrupted else 0
