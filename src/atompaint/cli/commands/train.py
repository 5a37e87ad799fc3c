"""``atompaint train TASK --config FILE``: train the neighbor-location or LBA model with Lightning."""

from __future__ import annotations

import argparse
import json

NAME = "train"
HELP = "Train a model (neighbor-loc or lba) from a YAML config with Lightning."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=["neighbor-loc", "lba"], help="which task to train")
    parser.add_argument("--config", required=True, help="YAML training config (see experiments/neighbor_loc/)")
    parser.add_argument("--output-dir", default="runs", help="where logs, checkpoints and curves go (default: runs/)")
    parser.add_argument("--devices", default=None, help="Lightning devices, e.g. 1, 4 or auto (overrides the config)")
    parser.add_argument("--strategy", default=None, help="Lightning strategy, e.g. ddp (overrides the config)")
    parser.add_argument("--accelerator", default=None, help="cpu, gpu or auto (overrides the config)")
    parser.add_argument("--resume", default=None, help="checkpoint to resume from, or 'last' for this run's last.ckpt")
    parser.add_argument("--max-epochs", type=int, default=None, help="override trainer.max_epochs")
    parser.add_argument("--head-layer", default=None, help="override the head's structlayers plugin (dense, acdc, ...)")
    parser.add_argument("--head-depth", type=int, default=None, help="stack depth of a structured head layer")
    parser.add_argument("--pretrained", default=None, help="LBA: neighbor-loc checkpoint to start the encoder from")
    parser.add_argument("--fast-dev-run", type=int, default=0, help="run N train/val batches only, as a smoke test")


def _devices(value: str | None) -> str | int | None:
    if value is None or not value.isdigit():
        return value
    return int(value)


def run(args: argparse.Namespace) -> int:
    from atompaint.training import load_config, train

    config = load_config(args.config)
    if config.task != args.task:
        raise ValueError(f"{args.config} is a {config.task!r} config, not {args.task!r}")
    if args.max_epochs is not None:
        config.trainer.max_epochs = args.max_epochs
    if args.head_layer is not None:
        config.head = config.head.with_layer(args.head_layer, args.head_depth)
    elif args.head_depth is not None:
        raise ValueError("--head-depth needs --head-layer")
    if args.pretrained is not None:
        if args.task != "lba":
            raise ValueError("--pretrained only applies to lba fine-tuning")
        config.finetune.pretrained = args.pretrained
    result = train(
        config,
        output_dir=args.output_dir,
        devices=_devices(args.devices),
        strategy=args.strategy,
        accelerator=args.accelerator,
        resume=args.resume,
        fast_dev_run=args.fast_dev_run or False,
    )
    summary = {
        "log_dir": str(result.log_dir),
        "seconds": round(result.seconds, 1),
        "metrics": {k: round(v, 4) for k, v in sorted(result.metrics.items())},
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "curves": str(result.curves) if result.curves else None,
        **result.extra,
    }
    print(json.dumps(summary, indent=2))
    return 0
