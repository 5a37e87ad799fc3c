"""``structlayers bench``: time the layers against nn.Linear (see :mod:`structlayers.lab.bench.harness`)."""

from __future__ import annotations

import argparse
import sys

import torch

from structlayers.cli.arguments import add_result_outputs, check_result_outputs
from structlayers.clikit import add_deprecated, add_list, write_output
from structlayers.lab.bench.harness import ALLOCATORS, BenchConfig, run_bench

NAME = "bench"
HELP = "Time forward and forward+backward of the layers against nn.Linear of the same shape."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    add_list(parser, "--layers", default=d.names, metavar="LAYER",
             help="registered layer names, each optionally with options (name:key=value:..., e.g. monarch:nblocks=4)")
    add_list(parser, "--sizes", item=int, default=list(d.sizes), metavar="N", help="square sizes N")
    add_list(parser, "--batch-size", item=int, default=list(d.batches), metavar="N", help="batch sizes (rows)")
    add_deprecated(parser, "--batch", "--batch-size", "batch_size", nargs="+", type=int)
    parser.add_argument("--device", default=d.device, help="cpu, cuda or cuda:K")
    parser.add_argument("--dtype", default=d.dtype, choices=("float32", "float64"),
                        help="parameter and input dtype of every timed layer")
    parser.add_argument("--depth", type=int, default=d.depth, help="depth of a 'stack' given without one")
    parser.add_argument("--backend", default=d.backend, choices=("fft", "dense", "auto"),
                        help="transform backend of acdc / afdf / stack")
    parser.add_argument("--repeats", type=int, default=d.repeats, help="timed rounds per (N, batch, mode)")
    parser.add_argument("--large-repeats", type=int, default=d.large_repeats,
                        help=f"timed rounds for N >= {d.large_size}")
    parser.add_argument("--warmup", type=int, default=d.warmup, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--bandwidth-mb", type=int, default=d.bandwidth_mb,
                        help="buffer size of the memory-bandwidth probe (MiB; larger than the caches)")
    parser.add_argument("--gemm-size", type=int, default=d.gemm_size, help="size of the GEMM-rate probe")
    parser.add_argument("--no-backward", action="store_true", help="forward only")
    parser.add_argument("--no-collapse", action="store_true", help="skip timing the collapse() forms")
    parser.add_argument("--collapse-repeats", type=int, default=d.collapse_repeats,
                        help="timed rounds of each layer's structured, dense and collapsed forms")
    parser.add_argument("--allocator", default=d.allocator, choices=ALLOCATORS,
                        help="keep: glibc malloc keeps freed memory for reuse, as PyTorch's CPU launcher does "
                             "with tcmalloc/jemalloc (no page faults per call); system: leave malloc untouched")
    parser.add_argument("--compile", action="store_true",
                        help="time torch.compile'd modules (nn.Linear too) instead of eager ones")
    add_result_outputs(parser, "save a speed-up plot (PNG/PDF) here")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (every option spelled out)."""
    parts = ["structlayers bench"]
    for key, value in sorted(vars(args).items()):
        if key.startswith("_") or key == "command" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts.append(f"{flag} {' '.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    check_result_outputs(args)
    counts = (args.repeats, args.large_repeats, args.collapse_repeats, args.bandwidth_mb, args.gemm_size)
    if min(args.sizes) < 1 or min(args.batch_size) < 1 or min(counts) < 1:
        raise ValueError("sizes, batch sizes and repeats must be positive")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    config = BenchConfig(
        layers=tuple(args.layers), sizes=tuple(args.sizes), batches=tuple(args.batch_size), device=args.device,
        dtype=args.dtype, depth=args.depth, backend=args.backend, repeats=args.repeats,
        large_repeats=args.large_repeats, warmup=args.warmup, backward=not args.no_backward,
        collapse=not args.no_collapse, collapse_repeats=args.collapse_repeats, allocator=args.allocator,
        compile=args.compile,
        bandwidth_mb=args.bandwidth_mb, gemm_size=args.gemm_size,
    )
    result = run_bench(config, progress=None if args.no_progress else (
        lambda msg: print(f"  timing {msg}", file=sys.stderr, flush=True)))
    result.environment["command"] = _command(args)
    print(result.to_text())
    write_output(args.json, result.to_json(), "the results")
    if args.plot is not None:
        result.plot(str(args.plot))
        print(f"wrote the plot to {args.plot}", file=sys.stderr)
    return 0
