"""The two layout changes of the compressed training step, each measured alone at seed-004 shapes
(batch 4 pairs = 8 volumes, one thread, forward + backward, interleaved, paired ratios):

- grouped 3D convolutions (irrep-wise: one ``d -> d`` group per irrep copy; per-field: one
  ``35 -> 35`` group per field) in the default vs the channels-last memory format, conversions
  included (:func:`atompaint.encoders.separable.channels_last`);
- the per-irrep mixing writing its output as strided blocks of the field layout vs the gather /
  zero-fill / scatter / transpose path it still takes for other layouts;
- the fused batch norm (:class:`atompaint.encoders.layers.IIDBatchNorm`) vs escnn's, training mode;
- the first Hermite activation as one autograd Function vs autograd's chain of elementwise ops;
- the whole Fourier activation (transform, Hermite function, transform back) under autograd vs its
  fused training path in voxel blocks (:class:`atompaint.encoders.layers.FourierActivation`);
- ``--kinds grid`` (not in the default run): the grid-domain encoder's first block at the matched
  width (``bench.py``'s "grid (matched params) + dense mixing", 22 channels of 24 orientations at
  21^3): its depthwise convolution in the default vs the channels-last format, and its dense mixing
  on transposed rows (:class:`atompaint.encoders.grid.GridMixing`) vs one channel matmul on the
  channel-major layout (no transposes).

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/micro_layout.py \\
        --json experiments/compressed_encoders/results/micro_layout.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from escnn import nn as enn

from atompaint.encoders.fields import spectral_field_type
from atompaint.encoders.grid import GRID_SIZE, GridMixing
from atompaint.encoders.layers import FourierActivation, IIDBatchNorm, first_hermite, fourier_pointwise
from atompaint.encoders.mixing import IrrepMixing, MixingSpec
from atompaint.encoders.separable import channels_last
from structlayers.utils.timing import time_interleaved

warnings.filterwarnings("ignore", message=".*py3nj.*")
sys.path.insert(0, str(Path(__file__).parent))
import bench  # noqa: E402

#: (label, groups, channels per group, grid side): the depthwise steps of the seed-004 encoder's first
#: two resolutions (4 fields at 21^3, 8 fields at 11^3) in both depthwise forms.
CONVS = [("irrep-wise l=1, 12 copies, 21^3", 12, 3, 21), ("irrep-wise l=2, 20 copies, 21^3", 20, 5, 21),
         ("irrep-wise l=2, 40 copies, 11^3", 40, 5, 11), ("per-field, 4 fields, 21^3", 4, 35, 21),
         ("per-field, 8 fields, 11^3", 8, 35, 11)]
#: (label, fields, grid side, plugin): mixings of the same layers.
MIXINGS = [("4 -> 4 fields, 21^3, dense", 4, 21, "dense"), ("8 -> 8 fields, 11^3, dense", 8, 11, "dense"),
           ("8 -> 8 fields, 11^3, acdc x2", 8, 11, "acdc:depth=2")]


def conv_pair(groups: int, per_group: int, n: int, batch: int) -> list:
    channels = groups * per_group
    x = torch.randn(batch, channels, n, n, n, requires_grad=True)
    w = torch.randn(channels, per_group, 3, 3, 3, requires_grad=True)
    g = torch.randn(batch, channels, n, n, n)

    def default() -> None:
        F.conv3d(x, w, padding=1, groups=groups).backward(g)

    def last() -> None:
        F.conv3d(channels_last(x), w, padding=1, groups=groups).contiguous().backward(g)

    return [default, last]


def mixing_pair(fields: int, n: int, layer: str, batch: int) -> list:
    field_type = spectral_field_type(fields, 2)
    strided = IrrepMixing(field_type, field_type, MixingSpec.parse(layer)).linear
    scatter = copy.deepcopy(strided)
    scatter.in_blocks = scatter.out_blocks = None  # the gather / scatter path of other layouts
    x = torch.randn(batch, field_type.size, n, n, n, requires_grad=True)
    assert torch.allclose(strided(x), scatter(x), atol=1e-5)
    g = torch.randn(batch, field_type.size, n, n, n)
    return [lambda: scatter(x).backward(g), lambda: strided(x).backward(g)]


#: (label, channels in, channels out, grid side): the matched-width grid encoder's first block.
GRID = [("grid 11 -> 22 channels x 24, 21^3", 11, 22, 21)]


def grid_mixing_pair(c_in: int, c_out: int, n: int, batch: int) -> list:
    mixing = GridMixing(c_in, c_out)
    weight = mixing.map.to_dense()[0].detach().requires_grad_()  # (c_out, c_in)
    x = torch.randn(batch, c_in * GRID_SIZE, n, n, n, requires_grad=True)
    g = torch.randn(batch, c_out * GRID_SIZE, n, n, n)

    def matmul() -> torch.Tensor:
        return torch.matmul(weight, x.view(batch, c_in, -1)).view_as(g)

    assert torch.allclose(mixing(x), matmul(), atol=1e-4)
    return [lambda: mixing(x).backward(g), lambda: matmul().backward(g)]


#: (label, fields, grid side): batch norms of the same layers.
NORMS = [("4 fields, 21^3", 4, 21), ("16 fields, 5^3", 16, 5)]


def norm_pair(fields: int, n: int, batch: int) -> list:
    field_type = spectral_field_type(fields, 2)
    fused, escnn_norm = IIDBatchNorm(field_type), enn.IIDBatchNorm3d(field_type)
    x = torch.randn(batch, field_type.size, n, n, n, requires_grad=True)
    g = torch.randn(batch, field_type.size, n, n, n)

    def run(module: torch.nn.Module) -> None:
        module(enn.GeometricTensor(x, field_type)).tensor.backward(g)

    return [lambda: run(escnn_norm), lambda: run(fused)]


#: (label, fields, grid side): the Hermite activation's grid samples (96 per field) of the same layers.
ACTIVATIONS = [("4 fields x 96 samples, 21^3", 4, 21), ("8 fields x 96 samples, 11^3", 8, 11)]


def activation_pair(fields: int, n: int, batch: int) -> list:
    x = torch.randn(batch, fields, 96, n**3, requires_grad=True)
    g = torch.randn(batch, fields, 96, n**3)
    coeff = (2**0.5) * torch.pi ** (-0.25)
    return [lambda: (coeff * x * torch.exp(-(x**2) / 2)).backward(g), lambda: first_hermite(x).backward(g)]


def fourier_pair(fields: int, n: int, batch: int) -> list:
    activation = FourierActivation(fields, 2, 4, "hermite")
    x = torch.randn(batch, activation.in_type.size, n, n, n, requires_grad=True)
    g = torch.randn(batch, activation.out_type.size, n, n, n)

    def autograd() -> None:
        fourier_pointwise(x, activation.A, activation.Ainv, first_hermite, fields).backward(g)

    return [autograd, lambda: activation(enn.GeometricTensor(x, activation.in_type)).tensor.backward(g)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="volumes (both views of 4 pairs)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kinds", nargs="*", default=["conv", "mixing", "norm", "activation", "fourier"],
                        help="which cases to run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    load_before = bench.load_average()
    rows = []
    cases = [("conv", label, "default", "channels-last", conv_pair(g, c, n, args.batch)) for label, g, c, n in CONVS]
    cases += [("mixing", label, "gather/scatter", "strided blocks", mixing_pair(f, n, layer, args.batch))
              for label, f, n, layer in MIXINGS]
    cases += [("norm", label, "escnn IIDBatchNorm3d", "fused", norm_pair(f, n, args.batch)) for label, f, n in NORMS]
    cases += [("activation", label, "autograd chain", "one Function", activation_pair(f, n, args.batch))
              for label, f, n in ACTIVATIONS]
    cases += [("fourier", label, "autograd", "fused voxel blocks", fourier_pair(f, n, args.batch))
              for label, f, n in ACTIVATIONS if "fourier" in args.kinds]
    for label, c_in, c_out, n in GRID if "grid" in args.kinds else []:
        cases += [("grid", f"{label}: depthwise", "default", "channels-last",
                   conv_pair(c_out * GRID_SIZE, 1, n, args.batch)),
                  ("grid", f"{label}: dense mixing", "rows (plugin)", "channel matmul",
                   grid_mixing_pair(c_in, c_out, n, args.batch))]
    for kind, label, before, after, fns in cases:
        if kind not in args.kinds:
            continue
        timings = time_interleaved(fns, torch.device("cpu"), warmup=1, repeats=args.repeats)
        ratio = bench.paired_ratio(list(timings[0].samples), list(timings[1].samples))
        rows.append({"kind": kind, "case": label, "before": before, "after": after,
                     "before_seconds": list(timings[0].samples), "after_seconds": list(timings[1].samples),
                     "speedup": ratio})
        print(f"{label:36s} {before} {timings[0].median * 1e3:8.1f} ms  {after} {timings[1].median * 1e3:8.1f} ms  "
              f"{ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]", flush=True)
    command = "python experiments/compressed_encoders/micro_layout.py " + " ".join(sys.argv[1:])
    result = {"kinds": args.kinds, "command": command,
              "batch": args.batch, "repeats": args.repeats, "machine": bench.machine(),
              "load_average": {"before": load_before, "after": bench.load_average()}, "cases": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
