"""The study's variants, tasks and seeds: one place that run.py, step_time.py and summarize.py read.

Every run is a base YAML config of the task plus ``--set`` overrides (the encoder and head of the
variant, the seed of the run *and* of its data, the task's study settings).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUNS = ROOT / "runs" / "task_accuracy"

#: Encoder variants: dense escnn; separable with per-field and with irrep-wise depthwise steps, both
#: with ACDC (depth 2) per-irrep mixing and the Clebsch-Gordan tensor product.  (The shallow #3
#: architecture of the sanity configs has no gamma block, so ``tensor_product`` builds the same model;
#: it is set so that the config says what the issue asks for.)
SEPARABLE = {"encoder.conv": "separable", "encoder.mixing": "acdc", "encoder.mixing_depth": "2",
             "encoder.tensor_product": "clebsch-gordan"}
#: The other encoders of the compressed-encoder bench (issue 20 item 5), dense head only: the
#: separable encoders with dense per-irrep mixing (the bench's fastest spectral step) and the
#: grid-domain form (``conv: grid``, dense pointwise mixing; same ``width`` / ``max_channels``, each
#: channel 24 orientations instead of a band-limit-1 regular field's 10 coefficients).
SEPARABLE_DENSE_MIXING = {"encoder.conv": "separable", "encoder.tensor_product": "clebsch-gordan"}
ENCODERS: dict[str, dict[str, str]] = {
    "dense": {},
    "field": {**SEPARABLE, "encoder.depthwise": "field"},
    "irrep": {**SEPARABLE, "encoder.depthwise": "irrep"},
    "grid": {"encoder.conv": "grid"},
    "irrepdense": {**SEPARABLE_DENSE_MIXING, "encoder.depthwise": "irrep"},
    "fielddense": {**SEPARABLE_DENSE_MIXING, "encoder.depthwise": "field"},
    # The grid form with the channel plan 5.5x wider (2 -> 11, 4 -> 22), the widening that matches the
    # seed-004 grid encoder to the irrep-wise + dense-mixing one in parameters and FLOPs
    # (experiments/compressed_encoders/results/grid_widths.json).
    "gridwide": {"encoder.conv": "grid", "encoder.width": "11", "encoder.max_channels": "22"},
}
HEADS: dict[str, dict[str, str]] = {
    "dense": {},
    "acdc": {"head.layer": "acdc", "head.depth": "12"},
}
#: Encoders also run with the ACDC head.
ACDC_HEAD_ENCODERS = ("dense", "field", "irrep")
VARIANTS: dict[str, dict[str, str]] = {
    f"{enc}-enc_{head}-head": {**ENCODERS[enc], **HEADS[head]}
    for enc in ENCODERS for head in HEADS if head == "dense" or enc in ACDC_HEAD_ENCODERS
}
DENSE = "dense-enc_dense-head"
SEEDS = (0, 1, 2)

#: The neighbour construction the study runs (chosen from
#: experiments/neighbor_loc/results/construction_stats.json, see the README).
NEIGHBOR_CONSTRUCTION = "balanced"

TASKS: dict[str, dict] = {
    "residue-env": {
        "config": ROOT / "experiments/residue_env/sanity_dense.yaml",
        # ideal-cb: the centre carries no trace of the residue type (with `cb`, glycine is centred on
        # CA and is recognised from the centre alone: 96% of test glycines in the residue_env sanity run).
        # Half the sanity budget (6 epochs): measured 132-230 ms per step on the shared machine
        # (results/step_time.json) leaves no room for 6 epochs x 6 variants x 3 seeds by the deadline;
        # the sanity run's validation accuracy at epoch 3 was within 0.005 of its best (epoch 4).
        "sets": {"data.center": "ideal-cb", "trainer.max_epochs": "3"},
        "epochs": 3,
        "steps_per_epoch": 152,  # 4,847 training residues / 32
    },
    "neighbor-loc": {
        "config": ROOT / "experiments/neighbor_loc/sanity_dense_balanced.yaml",
        "sets": {"data.construction": NEIGHBOR_CONSTRUCTION},
        "epochs": 4,
        "steps_per_epoch": 32,  # train_size 1024 / 32
    },
}


def overrides(task: str, variant: str, seed: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The ``--set`` values of one run (the run seed and the data seed are the same)."""
    return {**TASKS[task]["sets"], **VARIANTS[variant], "seed": str(seed), "data.seed": str(seed), **(extra or {})}


def set_args(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
