"""Part 5 of issue 19, cost only: one measured training step of the seed-004-shaped neighbour model
with the irrep-wise separable encoder (ACDC x2 mixing, Clebsch-Gordan tensor product), and the
wall-clock a meaningful run would need on this machine.

The step (forward + backward + AdamW step) is timed at ``--batch`` pairs (a batch of 32 pairs of 21^3
views does not fit the time this study has); the estimate scales it linearly to the config's batch
size (CPU convolutions are linear in the batch) and multiplies by the config's batches per epoch.

    flock /tmp/heavy.lock env OMP_NUM_THREADS=1 .venv/bin/python experiments/task_accuracy/part5_estimate.py \\
        --json experiments/task_accuracy/results/part5_estimate.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from atompaint.encoders import build_encoder
from atompaint.encoders.costs import encoder_cost
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from atompaint.training.config import load_config
from structlayers.base import count_params
from structlayers.configs import replace_fields

warnings.filterwarnings("ignore")
CONFIG = "experiments/neighbor_loc/seed004_gamma_log16.yaml"
IRREP = {"encoder.conv": "separable", "encoder.depthwise": "irrep", "encoder.mixing": "acdc",
         "encoder.mixing_depth": "2", "encoder.tensor_product": "clebsch-gordan"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = replace_fields(load_config(CONFIG), IRREP, "config")
    model = NeighborLocClassifier(build_encoder(config.encoder), config.data.num_classes, config.head)
    cost = encoder_cost(model.encoder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    shape = (args.batch, *config.data.image.shape)
    inputs = (torch.randn(shape), torch.randn(shape))
    load_before = os.getloadavg()
    times = []
    for repeat in range(args.repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        model(*inputs).logsumexp(dim=1).sum().backward()
        optimizer.step()
        if repeat:
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    batch, per_epoch = config.data.batch_size, -(-config.data.train_size // config.data.batch_size)
    step_full = step * batch / args.batch
    report = {
        "command": " ".join(["python", *sys.argv]), "config": CONFIG, "overrides": IRREP,
        "threads": torch.get_num_threads(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "params": count_params(model), "encoder_params": count_params(model.encoder),
        "encoder_flops_per_view": int(cost.total.total),
        "measured_batch_pairs": args.batch, "step_seconds": [round(t, 2) for t in times],
        "step_seconds_median": round(step, 2),
        "estimate": {
            "batch_pairs": batch, "step_seconds": round(step_full, 1), "batches_per_epoch": per_epoch,
            "epoch_hours": round(step_full * per_epoch / 3600, 2),
            "config_epochs": config.trainer.max_epochs,
            "config_run_days": round(step_full * per_epoch * config.trainer.max_epochs / 86400, 1),
            "ten_epochs_hours": round(10 * step_full * per_epoch / 3600, 1),
            "note": "model step only (data loading of 21^3 views adds to it); one thread of a shared 2-core machine",
        },
    }
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
