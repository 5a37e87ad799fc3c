"""``structlayers train``: Lightning sanity runs on real MNIST / CIFAR-10 (see
:mod:`structlayers.lab.training`).  Every default is read from the run's configuration dataclasses."""

from __future__ import annotations

import argparse
import inspect
import json

from structlayers.cli.arguments import (
    add_init_arguments,
    add_model_options,
    add_replace_arguments,
    init_options,
    layer_spec,
)
from structlayers.clikit import add_config_arguments, add_out_dir, add_resume_arguments, config_from_args
from structlayers.lab.data.datamodule import DATAMODULES, DataConfig
from structlayers.lab.models import MODELS, get_spec, model_name, parse_model_options
from structlayers.lab.training.run import DEFAULT_MODELS, ModelConfig, TrainConfig, run_training
from structlayers.lightning import OptimConfig, TrainerConfig
from structlayers.registry import LayerSpec

NAME = "train"
HELP = "train a built-in model (optionally with layers replaced) on MNIST or CIFAR-10 with Lightning"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("task", choices=sorted(DATAMODULES), help="dataset")
    g = p.add_argument_group("model")
    defaults = ", ".join(f"{model} for {task}" for task, model in DEFAULT_MODELS.items())
    g.add_argument("--model", type=model_name, help=f"built-in model ({', '.join(sorted(MODELS))}), timm:<name> or "
                                                    f"torchvision:<name> (default: {defaults})")
    add_model_options(g)
    g.add_argument("--layer", dest="model.layer", default=str(ModelConfig().layer), metavar="LAYER",
                   help="factor of the structured MNIST models' stack, NAME[:depth=N][:KEY=VALUE...]")
    g.add_argument("--depth", dest="model.depth", type=int, metavar="N",
                   help="stack depth (MNIST stack models; with --replace, a stack of DEPTH factors; "
                        "default: the model's)")
    add_replace_arguments(g, "replace the --targets of a dense model by this layer")
    add_init_arguments(g)
    g = p.add_argument_group("optimisation")
    add_config_arguments(g, OptimConfig, dest_prefix="optim.", help={
        "optimizer": "optimiser", "lr": "learning rate", "weight_decay": "weight decay (L2 / AdamW decoupled)",
        "momentum": "SGD momentum (Nesterov)", "schedule": "learning-rate schedule",
        "plateau_factor": "learning-rate factor of the plateau schedule",
        "plateau_patience": "epochs without improvement before the plateau schedule lowers the rate",
    })
    g.add_argument("--seed", type=int, default=d.seed, help=f"seed of everything random (default {d.seed})")
    g = p.add_argument_group("data")
    add_config_arguments(g, DataConfig, skip=("seed",), dest_prefix="data.", help={
        "data_dir": "MNIST IDX files / CIFAR-10 python batches or npz (default: $STRUCTLAYERS_DATA, else the "
                    "packaged MNIST test split; CIFAR-10 needs one of them)",
        "batch_size": "training batch size", "eval_batch_size": "validation batch size",
        "num_workers": "data-loading worker processes (0: in the main process)",
        "augment": "random shifts (MNIST) / crops and flips (CIFAR-10) during training",
        "val_size": "images held out for validation when only the MNIST test split is available",
        "split_seed": "seed of that held-out split",
        "max_shift": "largest random shift in pixels (default: 2 for MNIST, 4 for CIFAR-10)",
    })
    g = p.add_argument_group("outputs")
    add_out_dir(g, "run folder (default runs/<task>/<model>...)")
    add_resume_arguments(g)
    g = p.add_argument_group("Lightning Trainer")
    add_config_arguments(g, TrainerConfig, dest_prefix="trainer.",
                         flags={"max_epochs": "--epochs", "progress_bar": "--progress"},
                         help={"max_epochs": "epochs", "max_time": "wall-clock limit DD:HH:MM:SS",
                               "accelerator": "cpu, gpu or auto", "num_nodes": "machines (DDP)",
                               "precision": "Lightning precision, e.g. bf16-mixed (default: unset, Lightning's)",
                               "limit_val_batches": "fraction (<= 1.0) or number of validation batches",
                               "log_every_n_steps": "steps between logged training metrics",
                               "gradient_clip_val": "clip gradients to this norm",
                               "devices": "device count, ids such as 0,1, or auto",
                               "strategy": "Lightning strategy, e.g. ddp, ddp_spawn, fsdp",
                               "fast_dev_run": "run N batches of train and val only (0: off)",
                               "limit_train_batches": "fraction (<= 1.0) or number of batches per epoch",
                               "progress_bar": "progress bar"})


def run(args: argparse.Namespace) -> int:
    name = args.model or DEFAULT_MODELS[args.task]
    depth = getattr(args, "model.depth")
    layer = args.replace or getattr(args, "model.layer")
    spec = get_spec(name)
    if args.option and not (args.replace or spec.structured):
        raise ValueError(f"-o sets options of a structured layer: give --replace LAYER, or a structured --model "
                         f"({', '.join(n for n, s in MODELS.items() if s.structured)})")
    # Options of a structured model's layer are typed for the stack it builds (its default depth if none is given).
    if args.option and depth is None and spec.structured and not args.replace:
        depth = LayerSpec.text_fields(layer)["depth"] or inspect.signature(spec.builder).parameters["depth"].default
    config = TrainConfig(
        task=args.task,
        model=ModelConfig(
            name=name, layer=layer_spec(layer, args, depth),
            replace=bool(args.replace), targets=args.targets, skip_first=args.skip_first, skip_last=args.skip_last,
            model_options=parse_model_options(name, dict(args.model_option)),
            weights=str(args.weights) if args.weights else None, init=args.init, fit=init_options(args)["fit"],
        ),
        optim=config_from_args(OptimConfig, args, "optim."),
        data=config_from_args(DataConfig, args, "data.", seed=args.seed),
        trainer=config_from_args(TrainerConfig, args, "trainer."),
        seed=args.seed, out_dir=args.out_dir, resume=args.resume, resume_from=args.resume_from,
        overwrite=args.overwrite, override=args.override,
    )
    result = run_training(config)
    if result.interrupted:
        return 128 + (result.signal or 2)  # the shell's status for a process stopped by that signal
    if result.metrics:
        m = result.metrics
        summary = {k: m[k] for k in ("val_acc", "best_val_acc", "params", "flops_per_image", "train_seconds")}
        summary["collapsed"] = {k: m["collapsed"][k] for k in ("params", "flops_per_image", "prediction_agreement")}
        print(json.dumps(summary, indent=2))
        print("--fast-dev-run: a smoke test, nothing written" if config.trainer.fast_dev_run
              else f"outputs in {result.out_dir}")
    return 0
