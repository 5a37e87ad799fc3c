"""Can a kernel of our own beat oneDNN on the irrep-wise grouped convolutions (``d -> d`` channels per
group, channels-last, 3^3, stride 1)?  ``band_conv_kernel.cpp`` vectorises along the channels for any
``d`` (see its header); this times it against oneDNN at the seed-004 shapes (batch 8 volumes), one
thread, interleaved paired rounds: forward, and the weight gradient (oneDNN's ``convolution_backward``
with only that output), each with the padding copies the kernel needs.  Achieved rates count the
convolution's useful FLOPs (``2 (C / groups) k^3`` per output), as the cost tables do.

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/micro_band_conv.py \\
        --json experiments/compressed_encoders/results/micro_band_conv.json
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils import cpp_extension

from atompaint.encoders.separable import channels_last
from structlayers.utils.timing import time_interleaved

sys.path.insert(0, str(Path(__file__).parent))
import bench

#: (label, channels, channels per group, grid side) of the irrep-wise steps of the seed-004 encoders.
CASES = [("l=2, 20 copies, 21^3", 100, 5, 21), ("l=2, 10 copies, 21^3", 50, 5, 21),
         ("l=1, 12 copies, 21^3", 36, 3, 21), ("l=2, 40 copies, 11^3", 200, 5, 11),
         ("l=0, 4 copies, 21^3", 4, 1, 21)]
LANES = 16


def build():
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return cpp_extension.load(name="atompaint_band_conv_experiment",
                              sources=[str(Path(__file__).with_name("band_conv_kernel.cpp"))],
                              extra_cflags=["-O3", "-march=native"], verbose=False)


def padded_channels(c: int) -> int:
    return -(-c // LANES) * LANES


def pad_input(x: Tensor, d: int, padding: int) -> Tensor:
    """``(N, C, Z, Y, X)`` -> ``(N, Z + 2p, Y + 2p, X + 2p, Cw + 2 (d - 1))``, zeros around."""
    n, c, *size = x.shape
    out = x.new_zeros(n, *(s + 2 * padding for s in size), padded_channels(c) + 2 * (d - 1))
    out[:, padding:padding + size[0], padding:padding + size[1], padding:padding + size[2], d - 1:d - 1 + c] = \
        x.permute(0, 2, 3, 4, 1)
    return out


def pad_grad(g: Tensor) -> Tensor:
    out = g.new_zeros(*g.shape[:1], *g.shape[2:], padded_channels(g.shape[1]))
    out[..., :g.shape[1]] = g.permute(0, 2, 3, 4, 1)
    return out


def band(w: Tensor, d: int) -> Tensor:
    """``(C, d, k, k, k)`` -> ``wband (k^3, 2d - 1, Cw)``: ``wband[t, j + d - 1, o] = w[o, o % d + j, t]``."""
    c, k = w.shape[0], w.shape[-1]
    o = torch.arange(c)
    out = w.new_zeros(k**3, 2 * d - 1, padded_channels(c))
    flat = w.reshape(c, d, k**3)
    for jj in range(2 * d - 1):
        i = o % d + jj - (d - 1)
        inside = (i >= 0) & (i < d)
        out[:, jj, :c] = (flat[o, i.clamp(0, d - 1)] * inside[:, None]).T
    return out


def unband(wb: Tensor, c: int, d: int, k: int) -> Tensor:
    o = torch.arange(c)
    out = wb.new_zeros(c, d, k**3)
    for i in range(d):
        out[:, i] = wb[:, i - o % d + d - 1, o].T
    return out.view(c, d, k, k, k)


def routes(kernel, channels: int, d: int, n: int, batch: int) -> dict:
    groups = channels // d
    x = channels_last(torch.randn(batch, channels, n, n, n))
    w = torch.randn(channels, d, 3, 3, 3)
    g = channels_last(torch.randn(batch, channels, n, n, n))
    wb = band(w, d)

    def band_forward() -> Tensor:
        return kernel.forward(pad_input(x, d, 1), wb, channels, d, 3).permute(0, 4, 1, 2, 3)

    def band_weight_grad() -> Tensor:
        return unband(kernel.weight_grad(pad_input(x, d, 1), pad_grad(g), channels, d, 3), channels, d, 3)

    def onednn_weight_grad() -> Tensor:
        return torch.ops.aten.convolution_backward(g, x, w, None, [1] * 3, [1] * 3, [1] * 3, False, [0] * 3, groups,
                                                   [False, True, False])[1]

    torch.testing.assert_close(band_forward(), F.conv3d(x, w, padding=1, groups=groups), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(band_weight_grad(), onednn_weight_grad(), rtol=1e-4, atol=1e-2)
    return {"forward": (lambda: F.conv3d(x, w, padding=1, groups=groups), band_forward),
            "weight gradient": (onednn_weight_grad, band_weight_grad)}


def main() -> None:
    args = bench.micro_parser(__doc__.splitlines()[0]).parse_args()
    kernel = build()
    load_before = bench.load_average()
    rows = []
    for label, channels, d, n in CASES:
        flops = 2 * args.batch * n**3 * channels * d * 27
        for what, (onednn, ours) in routes(kernel, channels, d, n, args.batch).items():
            a, b = time_interleaved([onednn, ours], torch.device("cpu"), warmup=1, repeats=args.repeats)
            a, b = list(a.samples), list(b.samples)
            row = {"case": label, "pass": what, "useful_gflop": flops / 1e9,
                   "seconds": {"oneDNN": a, "band kernel": b},
                   "gflops_per_s_median": {"oneDNN": flops / 1e9 / sorted(a)[len(a) // 2],
                                           "band kernel": flops / 1e9 / sorted(b)[len(b) // 2]},
                   "band_kernel_speedup": bench.paired_ratio(a, b)}
            rows.append(row)
            rates = row["gflops_per_s_median"]
            print(f"{label}, {what}: oneDNN {rates['oneDNN']:.1f} GFLOP/s, band kernel {rates['band kernel']:.1f} "
                  f"GFLOP/s, {row['band_kernel_speedup']['median']:.2f}x", flush=True)
    bench.write_micro("micro_band_conv.py", args.json, load_before, batch=args.batch, repeats=args.repeats,
                      cases=rows, note="band_kernel_speedup: oneDNN's time over the band kernel's (padding copies "
                                       "included), paired by round; rates: useful FLOPs over the median time")


if __name__ == "__main__":
    main()
