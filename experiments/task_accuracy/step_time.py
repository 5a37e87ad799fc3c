"""Measured cost of one training step of every study variant, interleaved in one process.

For each task and variant: the model the task trains (residue-env classifier, or the two-view
neighbour classifier), one batch of random images of the config's batch size, AdamW; the time of
forward + backward + optimiser step, interleaved over the variants ``--repeats`` times after one
warm-up pass (median kept).  Per task, the time the training loader takes to make one batch
(``--data-batches`` batches of the first seed's training set; the same for every variant, since it
does not depend on the model).  Per variant, the encoder's parameters and forward FLOPs per image
(:func:`atompaint.encoders.costs.encoder_cost`).  The wall-clock of a training step is taken as
data + model step, and the equal-wall-clock budget of a variant is the dense variant's steps times
(data + dense step) / (data + variant step).

    flock /tmp/heavy.lock env OMP_NUM_THREADS=1 .venv/bin/python experiments/task_accuracy/step_time.py \\
        --json experiments/task_accuracy/results/step_time.json

``--extra NAME:BASE:KEY=VALUE,...`` adds a variant (BASE's overrides plus these), e.g. a wider
compressed encoder for the compute-matched runs.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import TASKS, VARIANTS, overrides

from atompaint.encoders import build_encoder
from atompaint.encoders.costs import encoder_cost
from atompaint.training.config import load_config
from structlayers.base import count_params
from structlayers.configs import replace_fields

warnings.filterwarnings("ignore")


def build(task: str, config):
    encoder = build_encoder(config.encoder)
    shape = (config.data.batch_size, *config.data.image.shape)
    if task == "residue-env":
        from atompaint.tasks.residue_env.model import ResidueEnvClassifier

        model = ResidueEnvClassifier(encoder, config.data.num_classes, config.head)
        inputs = (torch.randn(shape),)
    else:
        from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier

        model = NeighborLocClassifier(encoder, config.data.num_classes, config.head)
        inputs = (torch.randn(shape), torch.randn(shape))
    return model, inputs


def data_seconds(config, batches: int) -> float:
    datamodule = config.build_datamodule()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    it = iter(loader)
    next(it)  # warm-up (loads the first structures)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return (time.perf_counter() - start) / batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--extra", action="append", default=[], metavar="NAME:BASE:KEY=VALUE,...")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data-batches", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    variants = {name: VARIANTS[name] for name in args.variants}
    for spec in args.extra:
        name, base, sets = spec.split(":", 2)
        variants[name] = {**VARIANTS[base], **dict(kv.split("=", 1) for kv in sets.split(",") if kv)}
    report: dict = {"command": " ".join(["python", *sys.argv]), "threads": torch.get_num_threads(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "repeats": args.repeats,
                    "load_average_before": os.getloadavg(), "tasks": {}}
    for task in args.tasks:
        torch.manual_seed(0)
        base = load_config(TASKS[task]["config"])
        models = {}
        for name, sets in variants.items():
            values = {**overrides(task, "dense-enc_dense-head", 0), **sets}
            config = replace_fields(base, values, "config")
            model, inputs = build(task, config)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            cost = encoder_cost(model.encoder)
            models[name] = (model, inputs, optimizer, config, cost)
        times: dict[str, list[float]] = {name: [] for name in models}
        for repeat in range(args.repeats + 1):
            for name, (model, inputs, optimizer, _, _) in models.items():
                start = time.perf_counter()
                optimizer.zero_grad()
                model(*inputs).logsumexp(dim=1).sum().backward()
                optimizer.step()
                if repeat:
                    times[name].append(time.perf_counter() - start)
        dense_config = replace_fields(base, overrides(task, "dense-enc_dense-head", 0), "config")
        data = data_seconds(dense_config, args.data_batches)
        rows = {}
        for name, (model, _, _, config, cost) in models.items():
            step = statistics.median(times[name])
            rows[name] = {
                "overrides": variants[name], "ms_model_step": round(1000 * step, 2),
                "ms_model_step_all": [round(1000 * t, 2) for t in times[name]],
                "ms_step_with_data": round(1000 * (step + data), 2),
                "params": count_params(model), "encoder_params": count_params(model.encoder),
                "encoder_flops": int(cost.total.total), "encoder_flops_by_kind": {
                    k: int(v.total) for k, v in cost.flops.items() if v.total},
                "encoder_config": config.to_dict()["encoder"],
            }
        dense = rows["dense-enc_dense-head"]["ms_step_with_data"] if "dense-enc_dense-head" in rows else None
        for row in rows.values():
            row["wallclock_ratio_vs_dense"] = None if dense is None else round(dense / row["ms_step_with_data"], 4)
        report["tasks"][task] = {"ms_data_per_batch": round(1000 * data, 2),
                                 "batch_size": base.data.batch_size, "variants": rows}
        for name, row in rows.items():
            print(f"{task} {name}: model step {row['ms_model_step']} ms + data {1000 * data:.1f} ms, "
                  f"encoder {row['encoder_flops'] / 1e6:.2f} MFLOPs, {row['params']} params, "
                  f"steps x{row['wallclock_ratio_vs_dense']} of dense at equal wall-clock")
    report["load_average_after"] = os.getloadavg()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
