#!/usr/bin/env bash
# The dense sanity run, its shuffled-label control and their evaluation on the validation and test
# structures, with the images centred as data.center says (default cb, the dataclass default); what the
# README quotes is copied into experiments/residue_env/results/.
# Usage (from the repository root): bash experiments/residue_env/sanity.sh [RUNS_DIR [CENTER]]
set -euo pipefail
runs=${1:-runs/residue_env}
center=${2:-cb}
results=experiments/residue_env/results
config=experiments/residue_env/sanity_dense.yaml
name=residue-env-sanity-dense$([ "$center" = cb ] || echo "-$center")
mkdir -p "$results"
export OMP_NUM_THREADS=1
atompaint() { .venv/bin/atompaint "$@"; }

for shuffled in false true; do
    run=$name$([ "$shuffled" = false ] || echo -shuffled)
    atompaint train residue-env --config "$config" --out-dir "$runs" --no-progress --overwrite \
        --set data.center="$center" --set data.shuffle_labels=$shuffled --set name="$run"
    cp "$runs/$run/summary.json" "$results/$run.summary.json"
    cp "$runs/$run/csv/version_0/metrics.csv" "$results/$run.metrics.csv"
done
for split in val test; do
    out=$results/${name#residue-env-}.$split
    atompaint evaluate "$runs/$name/checkpoints/last.ckpt" --split "$split" \
        --shuffled-labels "$runs/$name-shuffled/checkpoints/last.ckpt" \
        --json "$out.json" --plot "$out.confusion.png" | tee "$out.txt"
done
