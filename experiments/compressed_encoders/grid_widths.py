"""Encoder parameters and FLOPs of the grid-domain form at wider channel plans (seed-004 shape), and
the width closest to a spectral variant in parameters and in FLOPs (analytic counts, no timing).

The seed-004 plan (``width: 2``, ``max_channels: 16``, log schedule) is scaled by an integer
``width`` with ``max_channels = 8 * width``; the target is a variant of ``bench.py``.

    python experiments/compressed_encoders/grid_widths.py \\
        --json experiments/compressed_encoders/results/grid_widths.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from atompaint.encoders import EncoderConfig, build_encoder
from atompaint.encoders.architectures import resnet_plan
from atompaint.encoders.costs import encoder_cost
from atompaint.training.config import load_config
from structlayers.base import count_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import VARIANTS

warnings.filterwarnings("ignore", message=".*py3nj.*")


def describe(config: EncoderConfig) -> dict:
    """Encoder parameters and forward FLOPs per example (two views), in total and per module type."""
    encoder = build_encoder(config)
    cost = encoder_cost(encoder)
    return {"params": count_params(encoder), "flops_per_example": 2 * cost.total.total,
            "flops_by_type": {k: 2 * v.total for k, v in cost.flops.items() if v.total}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/neighbor_loc/seed004_gamma_log16.yaml")
    parser.add_argument("--target", default="irrep-wise + dense mixing + CG", choices=list(VARIANTS))
    parser.add_argument("--widths", type=int, nargs="+", default=list(range(2, 17)))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    base = load_config(args.config).encoder
    target = describe(replace(base, **VARIANTS[args.target]))
    rows = []
    for width in args.widths:
        config = replace(base, conv="grid", width=width, max_channels=8 * width)
        rows.append({"width": width, "max_channels": 8 * width, "channels": resnet_plan(config)[1],
                     **describe(config)})
        print(f"width {width:3d} max {8 * width:4d}: {rows[-1]['params']:7d} params, "
              f"{rows[-1]['flops_per_example'] / 1e9:6.2f} GFLOPs / example", flush=True)
    result = {
        "command": "python experiments/compressed_encoders/grid_widths.py " + " ".join(sys.argv[1:]),
        "config": args.config, "target": {"variant": args.target, **target}, "grid": rows,
        "closest_params": min(rows, key=lambda r: abs(r["params"] - target["params"]))["width"],
        "closest_flops": min(rows, key=lambda r: abs(r["flops_per_example"] - target["flops_per_example"]))["width"],
    }
    print(f"target {args.target}: {target['params']} params, {target['flops_per_example'] / 1e9:.2f} GFLOPs; "
          f"closest width in params {result['closest_params']}, in FLOPs {result['closest_flops']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
