"""The fused Clebsch-Gordan kernel's tile size (voxels per tile) and loop form at the seed-004
tensor-product shapes: the kernel built once per arm, forward + backward of 8 volumes, one thread,
interleaved paired rounds, each arm's time relative to the first.  Arms: tiles of 64 voxels with a
run-time loop count (``-DCG_RUNTIME_COUNT=1``, the kernel's first form), then each tile size
(``-DCG_TILE=n``) with the compile-time count of whole tiles.  With ``--skip-zeros``: the kernel's
tiles against the same build skipping the zero Clebsch-Gordan coefficients (``-DCG_SKIP_ZEROS=1``).

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/micro_cg_tile.py \\
        --json experiments/compressed_encoders/results/micro_cg_tile.json
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch
from torch.utils import cpp_extension

from atompaint.encoders._cg_fused import CFLAGS, SOURCE
from atompaint.encoders.fields import spectral_field_type
from atompaint.encoders.tensor_product import CGTensorProduct
from structlayers.utils.timing import time_interleaved

sys.path.insert(0, str(Path(__file__).parent))
import bench

warnings.filterwarnings("ignore", message=".*py3nj.*")

#: (fields, grid edge): the tensor products of the three resolutions of the seed-004 encoder.
SHAPES = [(4, 21), (8, 11), (16, 5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-zeros", action="store_true",
                        help="arms: the default build, and the same skipping zero coefficients")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    load_before = bench.load_average()
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if args.skip_zeros:
        arms = {"128": ["-DCG_TILE=128"], "128, zeros skipped": ["-DCG_TILE=128", "-DCG_SKIP_ZEROS=1"]}
    else:
        arms = {"64, run-time count": ["-DCG_TILE=64", "-DCG_RUNTIME_COUNT=1"],
                **{str(tile): [f"-DCG_TILE={tile}"] for tile in args.tiles}}
    prefix = "atompaint_cg_kernel_zeros_arm" if args.skip_zeros else "atompaint_cg_kernel_arm"
    kernels = [cpp_extension.load(name=f"{prefix}{i}", sources=[str(SOURCE)],
                                  extra_cflags=[*CFLAGS, *flags]) for i, flags in enumerate(arms.values())]
    cases = []
    for fields, edge in SHAPES:
        ftype = spectral_field_type(fields, 2)
        core = CGTensorProduct(ftype, ftype).core
        g = torch.Generator().manual_seed(0)
        x = torch.randn(8, ftype.size, edge**3, generator=g)
        grad = torch.randn(8, ftype.size, edge**3, generator=g)
        weights = [w.detach().contiguous() for w in core.weights.values()]
        outputs = [k.forward(x, weights, core._spec, core._blocks) for k in kernels]
        for y in outputs[1:]:
            torch.testing.assert_close(y, outputs[0], rtol=1e-5, atol=1e-4)

        program = (weights, core._spec, core._blocks)
        timings = time_interleaved([lambda k=k, p=program, x=x, grad=grad: (k.forward(x, *p), k.backward(grad, x, *p))
                                    for k in kernels], torch.device("cpu"), warmup=1, repeats=args.repeats)
        rows = {}
        for arm, timing in zip(arms, timings):
            ratio = bench.paired_ratio(list(timings[0].samples), list(timing.samples))
            rows[arm] = {"seconds": list(timing.samples), "median_seconds": timing.median, "speedup": ratio}
            print(f"{fields:2d} fields at {edge}^3, tile {arm:>18}: {timing.median * 1e3:7.1f} ms forward + backward, "
                  f"{ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]", flush=True)
        cases.append({"fields": fields, "grid": edge, "batch": 8, "arms": rows})
    bench.write_micro("micro_cg_tile.py", args.json, load_before, repeats=args.repeats, arms=arms,
                      speedup_vs=next(iter(arms)), cases=cases)


if __name__ == "__main__":
    main()
