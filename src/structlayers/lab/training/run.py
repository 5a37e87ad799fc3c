"""One sanity run end to end: data, model (built-in, optionally with layers replaced), Lightning
training with checkpoints and CSV / TensorBoard logs, then ``metrics.json`` and ``curves.png``.

Layout of ``out_dir`` (the run folder of :class:`structlayers.lightning.RunDirectory`)::

    config.json                the run's configuration (config.original.json: the first one, once a
                               resumed session changed it; history.jsonl: one line per session)
    checkpoints/last.ckpt      written at the end of every epoch and when training stops (Ctrl-C,
                               SIGTERM, time limit); ``resume=True`` continues from the checkpoint
                               that got furthest, whatever its name
    checkpoints/best-*.ckpt    the best validation accuracy so far
    csv/version_N/metrics.csv  Lightning's CSV log, one version per session (a resume adds one)
    tensorboard/version_N/     TensorBoard event files
    metrics.json, curves.png   written when training finishes

A resumed session may change what :data:`RESUME_POLICY` allows (learning rate, epochs, devices...:
applied and recorded); other differences from the checkpoint's configuration are refused with the
list of them, or applied with ``override``.  ``fast_dev_run`` writes nothing anywhere.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import nn

from structlayers.accounting import count
from structlayers.collapse import collapse
from structlayers.configs import coerce, flat_keys, to_dict
from structlayers.lab.data.datamodule import DATAMODULES, DataConfig, ImageDataModule
from structlayers.lab.models import build_model, get_spec, load_weights
from structlayers.lab.training.module import ClassifierModule
from structlayers.lightning import OptimConfig, ResumePolicy, RunDirectory, RunPlan, TrainerConfig
from structlayers.lightning.callbacks import RunCheckpoints, build_trainer, fit_run
from structlayers.lightning.checkpoints import check_state_dict, load_checkpoint
from structlayers.lightning.curves import plot_curves, run_csv_files, run_title
from structlayers.registry import LayerSpec
from structlayers.surgery import (
    DEFAULT_KINDS,
    INIT_ALIASES,
    REPLACE_FIT,
    FitOptions,
    ReplaceReport,
    check_init_from,
    replace,
)

DEFAULT_MODELS = {"mnist": "mnist-stack", "cifar10": "resnet18"}


def upgrade_config(recorded: dict[str, Any]) -> dict[str, Any]:
    """A run configuration recorded in the previous vocabulary, in the current one: ``model.replace``
    naming a layer (``null``: none) is ``replace: true`` with that ``model.layer``, and an ``init``
    alias (``random``) its word (``scratch``); a one-line ``FutureWarning`` says so."""
    model = dict(recorded.get("model") or {})
    read: list[str] = []
    if "replace" in model and not isinstance(model["replace"], bool):
        layer, model["replace"] = model["replace"], model["replace"] is not None
        if layer is not None:
            model["layer"] = layer
        read.append(f"replace: {layer} as replace: {str(model['replace']).lower()}"
                    + (f", layer: {layer}" if layer is not None else ""))
    if model.get("init") in INIT_ALIASES:
        read.append(f"init: {model['init']} as init: {INIT_ALIASES[model['init']]}")
        model["init"] = INIT_ALIASES[model["init"]]
    if not read:
        return recorded
    warnings.warn(f"the run's recorded configuration uses deprecated words, read as the current ones: model "
                  f"{'; '.join(read)}", FutureWarning, stacklevel=2)
    return {**recorded, "model": model}


#: What a resumed run may change (the new values apply and are recorded), and the settings that
#: are not part of a run at all.  Everything else (model, data, optimiser type, schedule, seed)
#: must match the checkpoint's run unless the session overrides.
RESUME_POLICY = ResumePolicy(
    changeable=("optim.lr", "optim.weight_decay", "optim.momentum", "optim.plateau_*", "trainer.max_epochs",
                "trainer.max_time", "trainer.limit_*", "trainer.gradient_clip_val", "trainer.accelerator",
                "trainer.devices", "trainer.strategy", "trainer.num_nodes", "trainer.precision",
                "trainer.log_every_n_steps", "data.data_dir", "data.eval_batch_size", "data.num_workers"),
    ignored=("out_dir", "resume", "resume_from", "overwrite", "override", "trainer.progress_bar",
             "trainer.fast_dev_run"),
    upgrade=upgrade_config,
)
#: The trainer's own outputs in a run folder (removed with the run by ``overwrite``).
RUN_OUTPUTS = ("csv", "tensorboard", "metrics.json", "curves.png", "replace.txt")


@dataclass
class ModelConfig:
    """Which network to train: a built-in model, its structured layer, and optional surgery.

    ``layer`` is a :class:`~structlayers.LayerSpec` (or its text form, ``"acdc:depth=12"``), written
    flat in a configuration file as ``layer`` / ``depth`` / ``layer_options``.  For models built from
    plugins (``mnist-stack``...) it is the stack's factor and depth.  For dense models, ``replace``
    swaps the ``targets`` for that layer, keeping ``skip_first`` / ``skip_last`` dense.
    """

    name: str = "mnist-stack"
    layer: LayerSpec = field(default_factory=lambda: LayerSpec("acdc"),
                             metadata=flat_keys(layer="name", depth="depth", layer_options="options"))
    replace: bool = False
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))
    skip_first: int = 0
    skip_last: int = 0
    #: Keyword arguments of the model's constructor, e.g. ``{"width": 16}`` for a narrower ResNet18.
    model_options: dict[str, Any] = field(default_factory=dict)
    #: Trained weights (a state_dict or a ``structlayers train`` checkpoint) loaded before surgery.
    weights: str | None = None
    #: How replacements start (``init_from`` of :func:`structlayers.replace`): ``scratch`` (their own
    #: initialisation; ``random`` is a deprecated alias), ``project`` (closed form from the loaded
    #: weights) or ``fit`` (projected, then fitted iteratively, by ``fit``; written as ``fit_steps``).
    init: str = "scratch"
    fit: FitOptions = field(default=REPLACE_FIT, metadata=flat_keys(fit_steps="steps"))

    def __post_init__(self) -> None:
        self.layer = coerce(self.layer, LayerSpec, "model.layer")
        self.init = check_init_from(self.init)


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
    #: Continue the run in ``out_dir`` from its checkpoint that got furthest.
    resume: bool = False
    #: Continue from this checkpoint file instead.
    resume_from: Path | None = None
    overwrite: bool = False
    #: On resume, apply configuration changes that :data:`RESUME_POLICY` does not allow.
    override: bool = False

    def __post_init__(self) -> None:
        if self.task not in DATAMODULES:
            raise ValueError(f"unknown task {self.task!r}; expected one of {sorted(DATAMODULES)}")

    def run_dir(self) -> Path:
        if self.out_dir is not None:
            return Path(self.out_dir)
        m = self.model
        parts = [m.name.replace(":", "-"), *(f"{k}{v}" for k, v in sorted(m.model_options.items()))]
        layer = f"{m.layer.name}{m.layer.depth or ''}"
        if get_spec(m.name).structured:
            parts.append(layer)
        if m.replace:
            parts.append(f"{layer}-{'+'.join(m.targets)}")
        return Path("runs") / self.task / "-".join(parts)

    def title(self) -> str:
        """The run named in its figures, e.g.
        ``"cifar10 all-acdc12: resnet18, acdc x12 in pointwise+separable (seed 0)"``."""
        m = self.model
        if get_spec(m.name).structured:
            layers = m.layer.label
        elif m.replace:
            layers = f"{m.layer.label} in {'+'.join(m.targets)}"
        else:
            layers = "dense"
        return run_title(self.task, f"{self.run_dir().name}: {m.name}, {layers}", self.seed)


@dataclass
class TrainResult:
    """What a finished run measured (also written to ``metrics.json``)."""

    metrics: dict[str, Any]
    out_dir: Path
    model: nn.Module
    #: Training stopped on Ctrl-C or SIGTERM; ``checkpoint`` holds where (no metrics are computed).
    interrupted: bool = False
    checkpoint: Path | None = None
    #: The signal that interrupted training (``signal.SIGINT`` or ``SIGTERM``).
    signal: int | None = None


#: One image of each task, and its classes (zoo models are built for them).
TASK_INPUTS = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}


def build_run_model(config: ModelConfig, task: str) -> tuple[nn.Module, ReplaceReport | None]:
    """The network of a run, and the surgery report when layers were replaced.  A zoo model
    (``timm:...``, ``torchvision:...``) gets the task's number of classes (and, for timm, its input
    channels) unless its options say otherwise."""
    spec = get_spec(config.name)
    if not spec.zoo and spec.dataset != task:
        raise ValueError(f"model {config.name!r} is built for {spec.dataset}, not {task}")
    shape, classes = TASK_INPUTS[task]
    example = torch.zeros(1, *(shape if spec.zoo else spec.input_shape))
    if spec.zoo:
        defaults = {"num_classes": classes, **({"in_chans": shape[0]} if config.name.startswith("timm:") else {})}
        model = build_model(config.name, **{**defaults, **config.model_options})
    elif spec.structured:
        kwargs = {"factor": config.layer.name, **config.layer.options, **config.model_options}
        if config.layer.depth is not None:
            kwargs["depth"] = config.layer.depth
        model = build_model(config.name, **kwargs)
    else:
        model = build_model(config.name, **config.model_options)
    if config.weights:
        load_weights(model, config.weights)
    if not config.replace:
        return model, None
    return replace(model, config.layer.name, config.targets, skip_first=config.skip_first,
                   skip_last=config.skip_last, example_input=example, inplace=True, depth=config.layer.depth,
                   init_from=config.init, fit=config.fit, **config.layer.options)


def plan_run(config: TrainConfig) -> RunPlan | None:
    """Check the run folder for ``config`` before any work (reads only; see
    :meth:`structlayers.lightning.RunDirectory.plan`); ``None`` for a ``fast_dev_run`` that resumes nothing."""
    if config.trainer.fast_dev_run and not (config.resume or config.resume_from):
        return None
    return RunDirectory(config.run_dir(), RUN_OUTPUTS).plan(
        to_dict(config), resume=config.resume, resume_from=config.resume_from, overwrite=config.overwrite,
        override=config.override, policy=RESUME_POLICY, use_checkpoint="resume from it with --resume-from {path}",
    )


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
        "config": to_dict(config),
    }


def run_training(config: TrainConfig, callbacks: list[Callback] | None = None) -> TrainResult:
    """Train, validate and write the run's outputs (see the module docs); extra ``callbacks``
    go to the trainer.  The run folder is checked before anything is loaded or built."""
    plan = plan_run(config)
    fast = bool(config.trainer.fast_dev_run)
    directory = RunDirectory(config.run_dir(), RUN_OUTPUTS)
    if plan is not None:
        directory.clear(plan)
    out = directory.path
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = DataConfig(**{**asdict(config.data), "seed": config.seed})
    dm = DATAMODULES[config.task](data)
    dm.setup("fit")
    model, report = build_run_model(config.model, config.task)
    module = ClassifierModule(model, config.optim)
    ckpt = plan.checkpoint.path if plan is not None and plan.checkpoint is not None else None
    if ckpt is not None:
        check_state_dict(module, load_checkpoint(ckpt)["state_dict"], f"checkpoint {ckpt}")
    if plan is not None and rank_zero_only.rank == 0:
        print(plan.describe(), file=sys.stderr)
    keeper = None if fast else RunCheckpoints(directory, plan)
    run_callbacks: list[Callback] = [] if keeper is None else [
        ModelCheckpoint(dirpath=directory.checkpoints, filename="best-{epoch:03d}", monitor="val/acc", mode="max",
                        auto_insert_metric_name=False),
        keeper,
    ]
    trainer = build_trainer(
        **config.trainer.trainer_kwargs(),
        logger=False if fast else [CSVLogger(out, name="csv"), TensorBoardLogger(out, name="tensorboard")],
        callbacks=[*run_callbacks, *([TQDMProgressBar()] if config.trainer.progress_bar else []), *(callbacks or [])],
        enable_checkpointing=not fast,
        enable_model_summary=False,
        default_root_dir=None if fast else out,
    )
    start = time.perf_counter()
    interrupted = fit_run(trainer, module, keeper, datamodule=dm, ckpt_path=ckpt, weights_only=True)
    seconds = time.perf_counter() - start
    if interrupted:
        assert keeper is not None
        return TrainResult({}, out, module.model, interrupted=True, checkpoint=keeper.last_path,
                           signal=keeper.stop_signal)
    metrics: dict[str, Any] = {}
    if trainer.is_global_zero:
        metrics = _final_metrics(config, module, dm, trainer, report, seconds, out)
        if fast:
            metrics["checkpoint"] = None
        else:
            if report is not None:
                (out / "replace.txt").write_text(report.to_text() + "\n")
            for logger in trainer.loggers:
                logger.save()
            csv_files = run_csv_files(out / "csv")
            if csv_files:
                plot_curves(csv_files, out / "curves.png", title=config.title())
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return TrainResult(metrics, out, module.model, checkpoint=None if keeper is None else keeper.last_path)
