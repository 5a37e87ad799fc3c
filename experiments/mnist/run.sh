#!/usr/bin/env bash
# MNIST sanity runs of issue #4 on the packaged official test split (8,000 train / 2,000
# validation, fixed split seed). Pass extra flags through, e.g. --data-dir /path/to/MNIST.
# One thread per run: on shared CPUs, several single-threaded runs beat oversubscribed ones.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${OUT:-runs/mnist}
# 32 ACDC factors on the flattened image, no dense layer, first 10 outputs are the logits.
structlayers train mnist --model mnist-stack --layer acdc --depth 32 -o inner_shuffle=riffle \
    --max-shift 1 --batch-size 256 --epochs 16 --lr 5e-3 --schedule onecycle --out-dir "$OUT/stack32" "$@"
# StackedACDC(784 -> 64, depth 12) + ReLU + Linear(64, 10): linear stack (collapsible) ...
structlayers train mnist --model mnist-stack-linear --layer acdc --depth 12 -o activation=None \
    --epochs 20 --lr 5e-3 --schedule onecycle --out-dir "$OUT/stack12-linear" "$@"
# ... and with ReLUs between the factors (the research log's first model).
structlayers train mnist --model mnist-stack-linear --layer acdc --depth 12 \
    --epochs 20 --lr 5e-3 --schedule onecycle --out-dir "$OUT/stack12-relu-linear" "$@"
