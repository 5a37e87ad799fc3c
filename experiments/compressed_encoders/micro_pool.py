"""The anti-aliased pooling of the seed-004 encoders, forward + backward at their three shapes (batch 8
volumes: 4 view pairs), one thread, interleaved paired rounds: escnn's depthwise Gaussian ``conv3d``
(oneDNN, stride 2) against :func:`atompaint.encoders.pooling.blur_pool3d` (three 1D contractions), on
contiguous inputs (as in the encoders) and channels-last ones.

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/micro_pool.py \\
        --json experiments/compressed_encoders/results/micro_pool.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from atompaint.encoders.fields import aligned_pool_padding
from atompaint.encoders.pooling import blur_pool3d, gaussian_cube, gaussian_taps
from structlayers.utils.timing import time_interleaved

sys.path.insert(0, str(Path(__file__).parent))
import bench

#: (channels, grid side) of the three poolings of the seed-004 encoders (4, 8, 16 fields of 35 channels).
CASES = [(140, 21), (280, 11), (560, 5)]
FORMATS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last_3d}


def routes(channels: int, n: int, batch: int, memory_format: torch.memory_format) -> dict:
    taps = gaussian_taps(0.33).float()
    kernel = gaussian_cube(taps).expand(channels, 1, 3, 3, 3)
    padding = aligned_pool_padding(n, 3, 2)
    x = torch.randn(batch, channels, n, n, n).contiguous(memory_format=memory_format).requires_grad_()

    def conv() -> torch.Tensor:
        return F.conv3d(x, kernel, stride=2, padding=padding, groups=channels)

    def separable() -> torch.Tensor:
        return blur_pool3d(x, taps, [2] * 3, [padding] * 3)

    grad = torch.randn_like(conv())
    torch.testing.assert_close(separable(), conv(), rtol=1e-4, atol=1e-5)

    def step(fn):
        return lambda: torch.autograd.grad(fn(), x, grad)
    return {"conv3d (oneDNN)": step(conv), "three 1D contractions": step(separable)}


def main() -> None:
    args = bench.micro_parser(__doc__.splitlines()[0]).parse_args()
    load_before = bench.load_average()
    rows = []
    for channels, n in CASES:
        for format_name, memory_format in FORMATS.items():
            fns = routes(channels, n, args.batch, memory_format)
            timings = time_interleaved(list(fns.values()), torch.device("cpu"), warmup=1, repeats=args.repeats)
            base = list(timings[0].samples)
            row = {"case": f"{channels} channels, {n}^3, {format_name}",
                   "seconds": {k: list(t.samples) for k, t in zip(fns, timings)},
                   "speedup": bench.paired_ratio(base, list(timings[1].samples))}
            rows.append(row)
            print(f"{row['case']}: conv3d {1e3 * sorted(base)[len(base) // 2]:.1f} ms, separable "
                  f"{row['speedup']['median']:.2f}x [{row['speedup']['q1']:.2f}-{row['speedup']['q3']:.2f}]",
                  flush=True)
    bench.write_micro("micro_pool.py", args.json, load_before, batch=args.batch, repeats=args.repeats, cases=rows,
                      note="forward + input gradient; speedup: conv3d's time over the separable form's, "
                           "paired by round")


if __name__ == "__main__":
    main()
