"""Routes for the backward pass of the irrep-wise grouped convolutions (channels-last, one ``d -> d``
group per irrep copy) at seed-004 shapes, one thread, interleaved paired rounds: oneDNN's forward,
its backward (input and weight gradients together and each alone), the input gradient as a grouped
convolution with the transposed, flipped kernel, and the weight gradient as one grouped convolution
with the batch as channels (the output gradient as a ``21^3`` kernel).

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/micro_conv_backward.py \\
        --json experiments/compressed_encoders/results/micro_conv_backward.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from atompaint.encoders.separable import channels_last
from structlayers.utils.timing import time_interleaved

sys.path.insert(0, str(Path(__file__).parent))
import bench

#: (label, channels, channels per group, grid side), 8 volumes.
CASES = [("irrep-wise l=2, 20 copies, 21^3", 100, 5, 21), ("irrep-wise l=1, 12 copies, 21^3", 36, 3, 21),
         ("irrep-wise l=2, 40 copies, 11^3", 200, 5, 11)]


def routes(channels: int, per_group: int, n: int, batch: int) -> dict:
    groups = channels // per_group
    x = channels_last(torch.randn(batch, channels, n, n, n))
    w = torch.randn(channels, per_group, 3, 3, 3)
    g = channels_last(torch.randn(batch, channels, n, n, n))

    def backward(mask: list[bool]) -> tuple:
        return torch.ops.aten.convolution_backward(g, x, w, None, [1] * 3, [1] * 3, [1] * 3, False, [0] * 3,
                                                   groups, mask)

    flipped = w.flip(2, 3, 4).view(groups, per_group, per_group, 3, 3, 3).transpose(1, 2).reshape_as(w)

    def weight_as_conv() -> torch.Tensor:
        padded = F.pad(x, (1,) * 6)
        inp = padded.view(batch, groups, per_group, *padded.shape[2:]).permute(1, 2, 0, 3, 4, 5)
        kernel = g.view(batch, groups, 1, per_group, n, n, n).expand(batch, groups, per_group, per_group, n, n, n)
        out = F.conv3d(inp.reshape(1, channels * batch, *padded.shape[2:]),
                       kernel.permute(1, 2, 3, 0, 4, 5, 6).reshape(channels * per_group, batch, n, n, n),
                       groups=channels)
        return out.view(groups, per_group, per_group, 3, 3, 3).transpose(1, 2).reshape_as(w)

    grad_input, grad_weight = backward([True, True, False])[:2]
    torch.testing.assert_close(F.conv3d(g, flipped, padding=1, groups=groups), grad_input, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(weight_as_conv(), grad_weight, rtol=1e-4, atol=1e-2)
    return {"forward": lambda: F.conv3d(x, w, padding=1, groups=groups),
            "backward (input + weight)": lambda: backward([True, True, False]),
            "input gradient": lambda: backward([True, False, False]),
            "weight gradient": lambda: backward([False, True, False]),
            "input gradient as flipped-kernel convolution": lambda: F.conv3d(g, flipped, padding=1, groups=groups),
            "weight gradient as batch-as-channels convolution": weight_as_conv}


def main() -> None:
    args = bench.micro_parser(__doc__.splitlines()[0], repeats=5).parse_args()
    load_before = bench.load_average()
    rows = []
    for label, channels, per_group, n in CASES:
        fns = routes(channels, per_group, n, args.batch)
        timings = time_interleaved(list(fns.values()), torch.device("cpu"), warmup=1, repeats=args.repeats)
        forward = list(timings[0].samples)
        row = {"case": label, "seconds": {k: list(t.samples) for k, t in zip(fns, timings)},
               "speed_vs_forward": {k: bench.paired_ratio(forward, list(t.samples)) for k, t in zip(fns, timings)}}
        rows.append(row)
        print(label + ": " + ", ".join(f"{k} {v['median']:.2f}x" for k, v in row["speed_vs_forward"].items()),
              flush=True)
    result = {"command": "python experiments/compressed_encoders/micro_conv_backward.py " + " ".join(sys.argv[1:]),
              "batch": args.batch, "repeats": args.repeats, "machine": bench.machine(),
              "load_average": {"before": load_before, "after": bench.load_average()}, "cases": rows,
              "note": "speed_vs_forward: the forward's time over each route's, paired by round "
                      "(0.5x: the route takes twice the forward's time)"}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
