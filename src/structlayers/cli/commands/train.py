"""``structlayers train``: Lightning sanity runs on real MNIST / CIFAR-10 (see ``structlayers.training``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from structlayers.cli.arguments import add_replace_arguments, layer_option
from structlayers.data.datamodule import DATAMODULES, DataConfig
from structlayers.models import MODELS
from structlayers.training.module import OPTIMIZERS, SCHEDULES, OptimConfig
from structlayers.training.run import DEFAULT_MODELS, ModelConfig, TrainConfig, run_training

NAME = "train"
HELP = "train a built-in model (optionally with layers replaced) on MNIST or CIFAR-10 with Lightning"


def devices_arg(text: str) -> int | str | list[int]:
    """``auto``, a count (``2``, ``-1``) or a comma list of device ids (``0,1``)."""
    if text == "auto":
        return text
    try:
        return [int(v) for v in text.split(",") if v] if "," in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--devices takes 'auto', a count or a list such as 0,1; got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=sorted(DATAMODULES), help="dataset")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=sorted(MODELS), help=f"built-in model (default: {DEFAULT_MODELS})")
    g.add_argument("--model-option", "-m", type=layer_option, action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor argument, e.g. -m width=16 (ResNet18 base width) or -m hidden=128")
    g.add_argument("--layer", default="acdc", help="factor of the structured MNIST models' stack (default acdc)")
    g.add_argument("--depth", type=int, help="stack depth (MNIST stack models; with --replace, a stack of DEPTH factors)")
    add_replace_arguments(g, "replace the --targets of a dense model by this layer")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (Nesterov)")
    g.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="learning-rate schedule, stepped per batch")
    g.add_argument("--no-augment", action="store_true", help="no random shifts (MNIST) / crops and flips (CIFAR-10)")
    g.add_argument("--max-shift", type=int, help="largest random shift in pixels (default 2 for MNIST, 4 for CIFAR-10)")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("data and outputs")
    g.add_argument("--data-dir", type=Path, help="MNIST IDX files / CIFAR-10 python batches or npz "
                   "(default: $STRUCTLAYERS_DATA, else the packaged MNIST test split / ../shared/data/cifar10)")
    g.add_argument("--val-size", type=int, default=2000,
                   help="images held out for validation when only the MNIST test split is available (default 2000)")
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    g.add_argument("--out-dir", type=Path, help="run folder (default runs/<task>/<model>...)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out-dir from checkpoints/last.ckpt")
    g.add_argument("--overwrite", action="store_true", help="allow writing into a folder that holds a run")
    g = p.add_argument_group("Lightning")
    g.add_argument("--accelerator", default="auto", help="cpu, gpu, ... (default auto)")
    g.add_argument("--devices", type=devices_arg, default="auto", help="device count or ids, e.g. 4 or 0,1")
    g.add_argument("--strategy", default="auto", help="e.g. ddp, ddp_spawn, fsdp")
    g.add_argument("--num-nodes", type=int, default=1)
    g.add_argument("--precision", help="e.g. 32-true, bf16-mixed")
    g.add_argument("--fast-dev-run", type=int, default=0, metavar="N", help="run N batches of train and val only")
    g.add_argument("--limit-train-batches", type=float, help="fraction (<=1) or number of batches per epoch")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _limit(value: float | None) -> float | int | None:
    return int(value) if value is not None and value > 1 else value


def run(args: argparse.Namespace) -> int:
    config = TrainConfig(
        task=args.task,
        model=ModelConfig(
            name=args.model or DEFAULT_MODELS[args.task], layer=args.layer, depth=args.depth, replace=args.replace,
            targets=args.targets, skip_first=args.skip_first, skip_last=args.skip_last, layer_options=dict(args.option),
            model_options=dict(args.model_option),
        ),
        optim=OptimConfig(args.optimizer, args.lr, args.weight_decay, args.momentum, args.schedule),
        data=DataConfig(data_dir=args.data_dir, batch_size=args.batch_size, num_workers=args.num_workers,
                        augment=not args.no_augment, val_size=args.val_size,
                        max_shift=args.max_shift),
        epochs=args.epochs, seed=args.seed, out_dir=args.out_dir, resume=args.resume, overwrite=args.overwrite,
        accelerator=args.accelerator, devices=args.devices, strategy=args.strategy, num_nodes=args.num_nodes,
        precision=args.precision, fast_dev_run=args.fast_dev_run or False,
        limit_train_batches=_limit(args.limit_train_batches), progress_bar=not args.no_progress,
    )
    result = run_training(config)
    if result.metrics:
        m = result.metrics
        summary = {k: m[k] for k in ("val_acc", "best_val_acc", "params", "flops_per_image", "train_seconds")}
        summary["collapsed"] = {k: m["collapsed"][k] for k in ("params", "flops_per_image", "prediction_agreement")}
        print(json.dumps(summary, indent=2))
        print(f"outputs in {result.out_dir}")
    return 0
