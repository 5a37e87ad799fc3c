"""One sanity run end to end: data, model (built-in, optionally with layers replaced), Lightning
training with checkpoints and CSV / TensorBoard logs, then ``metrics.json`` and ``curves.png``.

Layout of ``out_dir``::

    config.json                the run's configuration
    checkpoints/last.ckpt      written every epoch; ``resume=True`` continues from it
    checkpoints/best-*.ckpt    the best validation accuracy so far
    csv/version_N/metrics.csv  Lightning's CSV log, one version per session (a resume adds one)
    tensorboard/version_N/     TensorBoard event files
    metrics.json, curves.png   written when training finishes
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn

from structlayers.accounting import count
from structlayers.collapse import collapse
from structlayers.lab.data.datamodule import DATAMODULES, DataConfig, ImageDataModule
from structlayers.lab.models import build_model, get_spec, load_weights
from structlayers.lab.training.module import ClassifierModule
from structlayers.runs import OptimConfig, TrainerConfig, plot_curves, run_csv_files
from structlayers.surgery import DEFAULT_KINDS, INIT_WORDS, FitOptions, ReplaceReport, replace

DEFAULT_MODELS = {"mnist": "mnist-stack", "cifar10": "resnet18"}


@dataclass
class ModelConfig:
    """Which network to train: a built-in model, its structured layer, and optional surgery.

    For models built from plugins (``mnist-stack``...), ``layer`` / ``depth`` / ``layer_options`` are the stack's
    factor and depth.  For dense models, ``replace`` swaps the ``targets`` for that layer (a stack
    of ``depth`` factors when ``depth`` is given), keeping ``skip_first`` / ``skip_last`` dense.
    """

    name: str = "mnist-stack"
    layer: str = "acdc"
    depth: int | None = None
    replace: str | None = None
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))
    skip_first: int = 0
    skip_last: int = 0
    layer_options: dict[str, Any] = field(default_factory=dict)
    #: Keyword arguments of the model's constructor, e.g. ``{"width": 16}`` for a narrower ResNet18.
    model_options: dict[str, Any] = field(default_factory=dict)
    #: Trained weights (a state_dict or a ``structlayers train`` checkpoint) loaded before surgery.
    weights: str | None = None
    #: How replacements start: ``random`` (their own initialisation), ``project`` (closed form from the
    #: loaded weights) or ``fit`` (projected, then fitted iteratively with ``fit_steps`` L-BFGS steps).
    init: str = "random"
    fit_steps: int = FitOptions.steps


@dataclass
class TrainConfig:
    """A full sanity run; ``trainer`` goes to ``lightning.Trainer`` (devices, strategy, ...)."""

    task: str = "mnist"
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    out_dir: Path | None = None
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.task not in DATAMODULES:
            raise ValueError(f"unknown task {self.task!r}; expected one of {sorted(DATAMODULES)}")

    def run_dir(self) -> Path:
        if self.out_dir is not None:
            return Path(self.out_dir)
        m = self.model
        parts = [m.name.replace(":", "-"), *(f"{k}{v}" for k, v in sorted(m.model_options.items()))]
        if get_spec(m.name).structured:
            parts.append(f"{m.layer}{m.depth or ''}")
        if m.replace:
            parts.append(f"{m.replace}{m.depth or ''}-{'+'.join(m.targets)}")
        return Path("runs") / self.task / "-".join(parts)


@dataclass
class TrainResult:
    """What a finished run measured (also written to ``metrics.json``)."""

    metrics: dict[str, Any]
    out_dir: Path
    model: nn.Module


#: One image of each task, and its classes (zoo models are built for them).
TASK_INPUTS = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}


def build_run_model(config: ModelConfig, task: str) -> tuple[nn.Module, ReplaceReport | None]:
    """The network of a run, and the surgery report when layers were replaced.  A zoo model
    (``timm:...``, ``torchvision:...``) gets the task's number of classes (and, for timm, its input
    channels) unless its options say otherwise."""
    spec = get_spec(config.name)
    if config.init not in INIT_WORDS:
        raise ValueError(f"init must be one of {sorted(INIT_WORDS)}, got {config.init!r}")
    if not spec.zoo and spec.dataset != task:
        raise ValueError(f"model {config.name!r} is built for {spec.dataset}, not {task}")
    shape, classes = TASK_INPUTS[task]
    example = torch.zeros(1, *(shape if spec.zoo else spec.input_shape))
    if spec.zoo:
        defaults = {"num_classes": classes, **({"in_chans": shape[0]} if config.name.startswith("timm:") else {})}
        model = build_model(config.name, **{**defaults, **config.model_options})
    elif spec.structured:
        kwargs = {"factor": config.layer, **config.layer_options, **config.model_options}
        if config.depth is not None:
            kwargs["depth"] = config.depth
        model = build_model(config.name, **kwargs)
    else:
        model = build_model(config.name, **config.model_options)
    if config.weights:
        load_weights(model, config.weights)
    if not config.replace:
        return model, None
    return replace(model, config.replace, config.targets, skip_first=config.skip_first, skip_last=config.skip_last,
                   example_input=example, inplace=True, depth=config.depth, init_from=INIT_WORDS[config.init],
                   fit=FitOptions(steps=config.fit_steps), **config.layer_options)


def _prepare_out_dir(config: TrainConfig) -> tuple[Path, Path | None]:
    out = config.run_dir()
    last = out / "checkpoints" / "last.ckpt"
    if config.resume:
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint {last} to continue from")
        return out, last
    if out.exists() and any(out.iterdir()) and not config.overwrite and not config.trainer.fast_dev_run:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or --overwrite / another --out-dir")
    out.mkdir(parents=True, exist_ok=True)
    return out, None


@torch.no_grad()
def evaluate(model: nn.Module, datamodule: ImageDataModule, device: torch.device) -> torch.Tensor:
    """Predicted classes of ``model`` on the validation set, in order."""
    model.eval().to(device)
    preds = []
    for images, labels in datamodule.val_dataloader():
        images, _ = datamodule.on_after_batch_transfer((images.to(device), labels), 0)
        preds.append(model(images).argmax(-1).cpu())
    return torch.cat(preds)


def _final_metrics(config: TrainConfig, module: ClassifierModule, dm: ImageDataModule, trainer: L.Trainer,
                   report: ReplaceReport | None, seconds: float, out: Path) -> dict[str, Any]:
    model = module.model
    device = next(model.parameters()).device
    example = torch.zeros(1, *dm.input_shape, device=device)
    trained = count(model, example)
    labels = torch.from_numpy(dm.splits.val_labels)
    preds = evaluate(model, dm, device)
    collapsed, collapse_report = collapse(model, example)
    collapsed_preds = evaluate(collapsed, dm, device)
    collapsed_count = count(collapsed, example)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    best = getattr(trainer.checkpoint_callback, "best_model_score", None)
    return {
        "task": config.task,
        "model": config.model.name,
        "data": dm.splits.describe(),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "train_seconds": round(seconds, 1),
        "val_acc": float((preds == labels).float().mean()),
        "best_val_acc": None if best is None else float(best),
        "logged": logged,
        "params": trained.total_params,
        "flops_per_image": trained.total_flops,
        "matmul_flops_per_image": trained.total_matmul_flops,
        "collapsed": {
            "layers": collapse_report.collapsed,
            "params": collapsed_count.total_params,
            "flops_per_image": collapsed_count.total_flops,
            "val_acc": float((collapsed_preds == labels).float().mean()),
            "prediction_agreement": float((collapsed_preds == preds).float().mean()),
        },
        "replaced": None if report is None else {
            "layers": report.names,
            "params_before": report.total_params_before,
            "params_after": report.total_params_after,
            "flops_before": report.total_flops_before,
            "flops_after": report.total_flops_after,
        },
        "checkpoint": str(out / "checkpoints" / "last.ckpt"),
        "config": json.loads(json.dumps(asdict(config), default=str)),
    }


def run_training(config: TrainConfig, callbacks: list[Callback] | None = None) -> TrainResult:
    """Train, validate and write the run's outputs (see the module docs); extra ``callbacks``
    go to the trainer."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = DataConfig(**{**asdict(config.data), "seed": config.seed})
    dm = DATAMODULES[config.task](data)
    dm.setup("fit")
    model, report = build_run_model(config.model, config.task)
    out, ckpt = _prepare_out_dir(config)
    module = ClassifierModule(model, config.optim)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2, default=str))
    if report is not None:
        (out / "replace.txt").write_text(report.to_text() + "\n")
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", filename="best-{epoch:03d}", monitor="val/acc",
                                 mode="max", save_last=True, auto_insert_metric_name=False)
    trainer = L.Trainer(
        **config.trainer.trainer_kwargs(),
        logger=[CSVLogger(out, name="csv"), TensorBoardLogger(out, name="tensorboard")],
        callbacks=[checkpoint, *([TQDMProgressBar()] if config.trainer.progress_bar else []), *(callbacks or [])],
        enable_model_summary=False,
        default_root_dir=out,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {}
    if trainer.is_global_zero:
        metrics = _final_metrics(config, module, dm, trainer, report, seconds, out)
        for logger in trainer.loggers:
            logger.save()
        csv_files = run_csv_files(out / "csv")
        if csv_files:
            plot_curves(csv_files, out / "curves.png", title=f"{config.task}: {config.model.name}")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return TrainResult(metrics, out, module.model)
