"""Where one CPU training step of a compressed seed-004 model spends its time: torch.profiler's
operator table (self CPU time) for one forward + backward of the neighbor-location model at batch 4,
after one warm-up step.

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/profile_step.py \\
        --variant "irrep-wise + acdc x2 + CG" --out experiments/compressed_encoders/results/profile_irrep_cg.txt
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from bench import VARIANTS
from torch.profiler import ProfilerActivity, profile

from atompaint.encoders import build_encoder
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from atompaint.training.config import load_config

warnings.filterwarnings("ignore", message=".*py3nj.*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/neighbor_loc/seed004_gamma_log16.yaml")
    parser.add_argument("--variant", default="irrep-wise + acdc x2 + CG", choices=list(VARIANTS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--by-shape", action="store_true", help="one row per operator and input shapes")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    config = load_config(args.config)
    encoder_config = replace(config.encoder, **VARIANTS[args.variant])
    torch.manual_seed(0)
    model = NeighborLocClassifier(build_encoder(encoder_config), config.data.num_classes, config.head).train()
    shape = (encoder_config.in_channels, *3 * [encoder_config.input_size])
    g = torch.Generator().manual_seed(0)
    views = tuple(torch.rand(args.batch, *shape, generator=g) for _ in range(2))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        logits = model(*views)
        torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long)).backward()

    step()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.by_shape) as prof:
        step()
    seconds = time.perf_counter() - start
    table = prof.key_averages(group_by_input_shape=args.by_shape).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40, max_shapes_column_width=100)
    text = (f"{args.variant}: one training step, batch {args.batch}, {torch.get_num_threads()} thread(s), "
            f"{seconds:.2f} s under the profiler\n{table}")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
