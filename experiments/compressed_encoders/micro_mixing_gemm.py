"""The dense mixing's weight gradient at seed-004 shapes: ``F.linear``'s backward forms it as
``grad_y^T @ x`` (``(out, rows) x (rows, in)``); the same matrix is ``(x^T @ grad_y)^T``. Both
orientations, one thread, interleaved paired rounds, for mixing maps whose rows are the
``l = 2`` components of 8 volumes (``8 x 5 x voxels``) at the first two resolutions.

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/micro_mixing_gemm.py \\
        --json experiments/compressed_encoders/results/micro_mixing_gemm.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from structlayers.utils.timing import time_interleaved

sys.path.insert(0, str(Path(__file__).parent))
import bench

#: (rows, in features, out features): copies of l = 2 mixed at 21^3 and 11^3, both directions and square.
CASES = [(8 * 5 * 21**3, 10, 20), (8 * 5 * 21**3, 20, 10), (8 * 5 * 21**3, 20, 20), (8 * 5 * 11**3, 20, 40),
         (8 * 5 * 11**3, 40, 20)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    load_before = bench.load_average()
    cases = []
    for rows, fan_in, fan_out in CASES:
        g = torch.Generator().manual_seed(0)
        x, grad = torch.randn(rows, fan_in, generator=g), torch.randn(rows, fan_out, generator=g)
        # Sums of `rows` unit-variance products: float32 rounding grows like sqrt(rows).
        torch.testing.assert_close(grad.t() @ x, (x.t() @ grad).t(), rtol=0, atol=1e-4 * rows**0.5)
        forms = [lambda x=x, grad=grad: grad.t() @ x, lambda x=x, grad=grad: (x.t() @ grad).t()]
        timings = time_interleaved(forms, torch.device("cpu"), warmup=1, repeats=args.repeats)
        ratio = bench.paired_ratio(list(timings[0].samples), list(timings[1].samples))
        cases.append({"rows": rows, "in": fan_in, "out": fan_out, "linear_backward_seconds": list(timings[0].samples),
                      "transposed_seconds": list(timings[1].samples), "transposed_speedup": ratio})
        print(f"rows {rows:7d}, {fan_in:2d} -> {fan_out:2d}: grad_y^T x {timings[0].median * 1e3:7.1f} ms, "
              f"(x^T grad_y)^T {timings[1].median * 1e3:7.1f} ms, {ratio['median']:.2f}x "
              f"[{ratio['min']:.2f}-{ratio['max']:.2f}]", flush=True)
    bench.write_micro("micro_mixing_gemm.py", args.json, load_before, repeats=args.repeats, cases=cases)


if __name__ == "__main__":
    main()
