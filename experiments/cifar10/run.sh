#!/usr/bin/env bash
# CIFAR-10 sanity runs of issue #4: ResNet18 dense, with the strided 1x1 shortcuts replaced by
# stacks of 12 ACDC factors, and with every pointwise / k x k convolution replaced (k x k made
# depthwise-separable, the stem kept dense); base width 16 (-m width=16) for a CPU budget.
# Data: the 6,102-image real subset (5,085 train / 1,017 validation) in
# ../shared/data/cifar10/cifar10_subset.npz; set DATA to another npz or cifar-10-batches-py/ folder.
# One thread per run: on shared CPUs, several single-threaded runs beat oversubscribed ones.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${OUT:-runs/cifar10}
COMMON=(--data-dir "${DATA:-../shared/data/cifar10/cifar10_subset.npz}" --model resnet18 -m width=16 --epochs 3 --batch-size 128 --optimizer sgd --lr 0.05 --weight-decay 5e-4 "$@")
structlayers train cifar10 "${COMMON[@]}" --out-dir "$OUT/dense"
structlayers train cifar10 "${COMMON[@]}" --replace acdc --depth 12 --targets pointwise --out-dir "$OUT/shortcuts"
# Stacks of 4 factors (12 is the log's choice but took ~7 min per epoch here); the dense DCT
# backend is faster than the FFT for these small channel counts on CPU (same function and parameters).
structlayers train cifar10 "${COMMON[@]}" --replace acdc --depth 4 -o backend=dense --targets pointwise separable \
    --skip-first 1 --out-dir "$OUT/all-acdc4"
structlayers train cifar10 "${COMMON[@]}" --replace acdc --depth 12 -o backend=dense --targets pointwise separable \
    --skip-first 1 --out-dir "$OUT/all-acdc12"
