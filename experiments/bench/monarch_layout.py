"""Monarch's forward against the layout of HazyResearch fly's ``blockdiag_butterfly_multiply`` (the
middle permutation as a contiguous copy in ``(rows, i, j)`` order read back as a strided view),
same weights, bit-identical output, each as a ratio to ``nn.Linear``'s time, timed interleaved in
one process on one thread: does the reference layout make ours faster on this machine?

    python experiments/bench/monarch_layout.py --out experiments/bench/monarch_layout.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from torch import Tensor

import structlayers
from structlayers.layers.monarch import Monarch
from structlayers.utils.timing import time_interleaved


def fly_layout(layer: Monarch, x: Tensor) -> Tensor:
    """``layer(x)`` (rank 1, no padding) written like fly's ``blockdiag_butterfly_multiply``."""
    rows, b, p, s = x.shape[0], layer.nblocks, layer.in_block, layer.out_block
    h = torch.bmm(x.view(rows, b, p).transpose(0, 1), layer.R)        # (i, rows, j)
    g = h.transpose(0, 1).reshape(rows, b, b).permute(2, 0, 1)        # (j, rows, i), a view of (rows, i, j)
    y = torch.bmm(g, layer.L)                                         # (j, rows, t)
    return y.permute(1, 2, 0).reshape(rows, s * b).add_(layer.bias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--nblocks", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    layer = structlayers.create("monarch", args.n, args.n, nblocks=args.nblocks).eval()
    linear = torch.nn.Linear(args.n, args.n)
    x = torch.randn(args.batch, args.n)
    with torch.no_grad():
        assert torch.equal(layer(x), fly_layout(layer, x)), "the two layouts disagree"

    def call(f):
        def run() -> object:
            with torch.no_grad():
                return f(x)
        return run

    linear_t, ours, fly = time_interleaved([call(linear), call(layer), call(lambda v: fly_layout(layer, v))],
                                           torch.device("cpu"), warmup=3, repeats=args.repeats, min_time=5e-3)
    record = {
        "command": f"python experiments/bench/monarch_layout.py --n {args.n} --nblocks {args.nblocks} "
                   f"--batch {args.batch} --repeats {args.repeats} --out {args.out}",
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 1,
        "linear_ms": 1e3 * linear_t.median, "ours_ms": 1e3 * ours.median, "fly_layout_ms": 1e3 * fly.median,
        "ours_speedup_over_linear": 1 / ours.paired_ratio(linear_t),
        "fly_layout_speedup_over_linear": 1 / fly.paired_ratio(linear_t),
    }
    args.out.write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
