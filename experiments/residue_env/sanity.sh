#!/usr/bin/env bash
# The dense sanity run, its shuffled-label control and their evaluation on the validation and test
# structures; what the README quotes is copied into experiments/residue_env/results/.
# Usage (from the repository root): bash experiments/residue_env/sanity.sh [RUNS_DIR]
set -euo pipefail
runs=${1:-runs/residue_env}
results=experiments/residue_env/results
config=experiments/residue_env/sanity_dense.yaml
mkdir -p "$results"
export OMP_NUM_THREADS=1
atompaint() { .venv/bin/atompaint "$@"; }

atompaint train residue-env --config "$config" --out-dir "$runs" --no-progress --overwrite
atompaint train residue-env --config "$config" --out-dir "$runs" --no-progress --overwrite \
    --set data.shuffle_labels=true --set name=residue-env-sanity-dense-shuffled
for run in residue-env-sanity-dense residue-env-sanity-dense-shuffled; do
    cp "$runs/$run/summary.json" "$results/$run.summary.json"
    cp "$runs/$run/csv/version_0/metrics.csv" "$results/$run.metrics.csv"
done
for split in val test; do
    atompaint evaluate "$runs/residue-env-sanity-dense/checkpoints/last.ckpt" --split "$split" \
        --shuffled-labels "$runs/residue-env-sanity-dense-shuffled/checkpoints/last.ckpt" \
        --json "$results/sanity_dense.$split.json" --plot "$results/sanity_dense.$split.confusion.png" \
        | tee "$results/sanity_dense.$split.txt"
done
