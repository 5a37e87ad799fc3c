"""``structlayers approx``: the matrix-approximation experiment."""

from __future__ import annotations

import argparse
import sys

from structlayers.cli.arguments import add_layer_options, add_result_outputs, check_result_outputs, layer_spec
from structlayers.clikit import add_list, write_output
from structlayers.lab.approx import ApproxConfig, run_approx
from structlayers.lab.approx.experiment import CHARGES, PROTOCOL_DEFAULTS, PROTOCOLS
from structlayers.lab.approx.plot import plot_result
from structlayers.lab.approx.targets import GENERATED
from structlayers.surgery.fit import OPTIMIZERS, FitOptions

NAME = "approx"
HELP = ("fit layers (or stacks of them) to target matrices, check convergence, and compare with the truncated SVD, "
        "random features and other structured families at equal parameters")


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def seed(text: str) -> int:
    value = _int_at_least(text, 0)
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"seeds must be below 2**63, got {text!r}")
    return value


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, got {text!r}")
    return value


#: The most seeds ``--seeds N`` may ask for.
MAX_SEEDS = 10_000


def seed_list(values: list[int] | None) -> tuple[int, ...] | None:
    """``--seeds 3`` means seeds 0, 1, 2; ``--seeds 0 5 9`` (or ``0,5,9``) means exactly those."""
    if values is None or len(values) > 1:
        return None if values is None else tuple(values)
    if not 1 <= values[0] <= MAX_SEEDS:
        raise ValueError(f"--seeds: expected 1 to {MAX_SEEDS} seeds, got {values[0]}")
    return tuple(range(values[0]))


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ApproxConfig()
    fit = d.fit
    (n_default, seeds_default), (log_n, log_seeds) = PROTOCOL_DEFAULTS["frobenius"], PROTOCOL_DEFAULTS["research-log"]
    add_list(p, "--layer", default=[str(spec) for spec in d.layers], metavar="LAYER",
             help="layer(s) to fit, registered names, each optionally with options "
                  "(name:key=value:...), e.g. acdc afdf:cascade=complex monarch")
    p.add_argument("--n", type=int, default=None,
                   help=f"size of the generated square targets (default: {n_default}; {log_n} for research-log)")
    add_list(p, "--depth", item=positive_int, default=list(d.depths), metavar="DEPTH",
             help="stack depth, or a list such as 1 2 4 8 16 32 (default: the layer itself)")
    add_list(p, "--params-budget", item=positive_int, default=list(d.budgets), metavar="P",
                   help="instead of --depth: for every layer family, the configuration (depth, blocks, rank) with "
                        "the most parameters within each budget")
    add_list(p, "--shuffle", default=d.shuffle.split(","), metavar="SHUFFLE",
             help="shuffle(s) between stacked factors: riffle, random, none")
    add_list(p, "--seeds", item=seed, default=None, metavar="SEED",
             help=f"number of seeds, or the seeds themselves (two or more) (default: {len(seeds_default)}; "
                  f"{len(log_seeds)} for research-log)")
    p.add_argument("--target", default=d.target,
                   help=f"{'|'.join(GENERATED)}, or a .pt file (a 2-D tensor or a dict with 'weight'), "
                        "or file.pt:name for one entry of a dict")
    p.add_argument("--protocol", choices=PROTOCOLS, default=d.protocol,
                   help="frobenius: relative Frobenius error against --target; research-log: the 2018 experiment's "
                        "output MSE on nn.Linear(32, 32) targets, X ~ U(0, 1), 100 samples, 10 repeats, with its "
                        "reported values beside ours")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=fit.optimizer,
                   help="lbfgs (scipy L-BFGS-B), cg (scipy CG), trf (scipy least_squares, exact Jacobian) or adam")
    p.add_argument("--steps", type=int, default=fit.steps,
                   help="most iterations per fit (trf: residual evaluations)")
    p.add_argument("--lr", type=float, default=fit.lr, help="learning rate of adam (default: 1e-2); an error for "
                                                            "the others, which choose their steps by line search")
    p.add_argument("--ftol", type=float, default=fit.ftol,
                   help="converged when an iteration lowers the loss by less than this, relative")
    p.add_argument("--gtol", type=float, default=fit.gtol,
                   help="converged when max |gradient| falls below this (lbfgs, cg, trf)")
    p.add_argument("--patience", type=int, default=fit.patience,
                   help="adam: steps over which the loss must improve by ftol")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads during the fits and timings")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="processes the fits are spread over (default: as many as the available CPUs hold at "
                        "--threads each); the results do not depend on it")
    p.add_argument("--no-timing", action="store_true", help="skip timing the fitted layers' forward pass")
    p.add_argument("--charge", choices=CHARGES, default=d.charge,
                   help="what the SVD and random-features baselines are given: the layer's nominal parameter count "
                        "or its local dimension (Jacobian rank at the fitted point)")
    p.add_argument("--no-project-start", action="store_true",
                   help="fit from the random start only (by default each layer is also fitted from its projection "
                        "onto its family, where one exists, and the lower error kept)")
    p.add_argument("--legacy-objective", action="store_true",
                   help="research-log with --optimizer cg: the 2018 fit, float32 through the log's objective wrapper "
                        "(stale value and gradient for points within 1e-4 of the last one)")
    add_layer_options(p)
    add_result_outputs(p, "write error against parameters and against measured forward time (PNG or SVG)")


def run(args: argparse.Namespace) -> int:
    check_result_outputs(args)
    depths = tuple(args.depth)
    if args.params_budget and depths != ApproxConfig().depths:
        raise ValueError("give either --depth or --params-budget, not both")
    fit = FitOptions(args.optimizer, args.steps, args.lr, args.ftol, args.gtol, args.patience)
    config = ApproxConfig(
        layers=tuple(layer_spec(text, args) for text in args.layer if text.strip()), n=args.n, depths=depths,
        shuffle=",".join(args.shuffle), seeds=seed_list(args.seeds), target=args.target, protocol=args.protocol,
        budgets=tuple(args.params_budget), fit=fit, timing=not args.no_timing, threads=args.threads,
        workers=args.workers,
        project_start=not args.no_project_start, charge=args.charge, legacy_objective=args.legacy_objective,
    )
    config.validate()
    result = run_approx(config, progress=not args.no_progress)
    if not result.runs:  # run_approx refuses plans without any fit, so only Ctrl-C gets here
        print("structlayers approx: interrupted before any fit finished", file=sys.stderr)
        return 130
    print(result.to_text())
    write_output(args.json, result.to_json(), "the results")
    if args.plot:
        plot_result(result, args.plot)
        print(f"wrote the plot to {args.plot}", file=sys.stderr)
    return 130 if result.interrupted else 0
