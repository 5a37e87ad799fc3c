#!/usr/bin/env bash
# Trained weight matrices for `structlayers approx --target`: two short runs of the project's own
# models (a dense MNIST MLP with a 64x64 hidden layer; the dense width-16 ResNet18 on the CIFAR-10
# subset), then make_targets.py copies a few of their weights into small .pt files here.
# About 3 minutes on 2 CPU cores. Run from the repository root.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUNS=${RUNS:-runs/approx-targets}
CIFAR=${CIFAR:-../shared/data/cifar10/cifar10_subset.npz}
structlayers train mnist --model mnist-mlp -m hidden=64 -m hidden_layers=2 --epochs 20 --lr 1e-3 \
    --out-dir "$RUNS/mnist-mlp" --overwrite --no-progress
structlayers train cifar10 --data-dir "$CIFAR" --model resnet18 -m width=16 --epochs 10 --batch-size 128 \
    --optimizer sgd --lr 0.05 --weight-decay 5e-4 --out-dir "$RUNS/cifar-resnet18" --overwrite --no-progress
python experiments/approx/targets/make_targets.py --runs "$RUNS" --out experiments/approx/targets
