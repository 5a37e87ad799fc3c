"""CPU time of one training step (forward + backward, one batch of random images) of the residue-env
model of each config, interleaved over repeats; the median per config, its parameters and the
machine's load average are written as JSON.

    env OMP_NUM_THREADS=1 python experiments/residue_env/step_time.py experiments/residue_env/sanity_*.yaml \\
        --json experiments/residue_env/results/step_time_sanity.json

``--set KEY=VALUE`` (repeatable) changes every config, e.g. ``--set encoder.architecture=resnet``.
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
from atompaint.tasks.residue_env.model import ResidueEnvClassifier
from atompaint.training.config import load_config
from structlayers.base import count_params
from structlayers.clikit import key_value
from structlayers.configs import replace_fields

warnings.filterwarnings("ignore", message=".*py3nj.*")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--set", dest="overrides", type=key_value, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    models = {}
    for path in args.configs:
        config = replace_fields(load_config(path), dict(args.overrides), "config")
        model = ResidueEnvClassifier(build_encoder(config.encoder), config.data.num_classes, config.head)
        batch = torch.randn(config.data.batch_size, *config.data.image.shape)
        models[config.name] = (model, batch, config)
    times: dict[str, list[float]] = {name: [] for name in models}
    load_before = os.getloadavg()
    for repeat in range(args.repeats + 1):
        for name, (model, batch, _) in models.items():
            start = time.perf_counter()
            model(batch).logsumexp(dim=1).sum().backward()
            if repeat:  # the first pass warms up
                times[name].append(time.perf_counter() - start)
    rows = {name: {"ms_per_step": round(1000 * statistics.median(t), 1), "batch_size": config.data.batch_size,
                   "encoder": config.to_dict()["encoder"], "head": config.to_dict()["head"],
                   "params": count_params(model)}
            for name, t in times.items() for model, _, config in [models[name]]}
    report = {"command": " ".join(["python", *sys.argv]), "threads": torch.get_num_threads(),
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "steps": rows}
    for name, row in rows.items():
        print(f"{name}: {row['ms_per_step']} ms per step of {row['batch_size']}, {row['params']} parameters")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
