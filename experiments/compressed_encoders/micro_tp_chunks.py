"""The Clebsch-Gordan tensor product's training chunk size (``tensor_product.CHUNK_ROWS``: rows of
examples x fields x voxels per activation-checkpointed chunk) at the seed-004 encoder's first
resolution (4 fields at 21^3, 8 volumes), forward + backward, one thread, interleaved paired rounds
against the default.

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/micro_tp_chunks.py \\
        --json experiments/compressed_encoders/results/micro_tp_chunks.json
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from escnn import nn as enn

from atompaint.encoders import tensor_product
from atompaint.encoders.fields import spectral_field_type
from structlayers.utils.timing import time_interleaved

warnings.filterwarnings("ignore", message=".*py3nj.*")
sys.path.insert(0, str(Path(__file__).parent))
import bench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="volumes (both views of 4 pairs)")
    parser.add_argument("--fields", type=int, default=4)
    parser.add_argument("--size", type=int, default=21)
    parser.add_argument("--rows", type=int, nargs="+", default=[4096, 16384, 65536],
                        help="chunk sizes compared with the default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    default = tensor_product.CHUNK_ROWS
    sizes = [default, *(r for r in args.rows if r != default)]
    field_type = spectral_field_type(args.fields, 2)
    torch.manual_seed(0)
    module = tensor_product.CGTensorProduct(field_type, field_type)
    x = torch.randn(args.batch, field_type.size, *3 * [args.size])

    def run(rows: int) -> None:
        tensor_product.CHUNK_ROWS = rows
        try:
            inp = x.detach().requires_grad_(True)
            y = module(enn.GeometricTensor(inp, field_type)).tensor
            y.backward(torch.ones_like(y))
        finally:
            tensor_product.CHUNK_ROWS = default

    load_before = bench.load_average()
    timings = time_interleaved([lambda r=r: run(r) for r in sizes], torch.device("cpu"), warmup=1,
                               repeats=args.repeats)
    rows = []
    for rows_per_chunk, timing in zip(sizes, timings):
        ratio = bench.paired_ratio(list(timings[0].samples), list(timing.samples))
        rows.append({"chunk_rows": rows_per_chunk, "seconds": list(timing.samples), "speedup_vs_default": ratio})
        print(f"CHUNK_ROWS {rows_per_chunk:6d}: median {timing.median:.3f} s, vs {default}: {ratio['median']:.2f}x "
              f"[{ratio['min']:.2f}-{ratio['max']:.2f}]", flush=True)
    bench.write_micro("micro_tp_chunks.py", args.json, load_before, default_chunk_rows=default, batch=args.batch,
                      fields=args.fields, size=args.size, repeats=args.repeats, cases=rows)

if __name__ == "__main__":
    main()
