"""Run a training job in its run folder: data, task, Lightning trainer with CSV logs, checkpoints,
resume and learning curves, through :mod:`structlayers.lightning`.

Layout of ``<out_dir>/<name>/`` (a :class:`structlayers.lightning.RunDirectory`)::

    config.json                the run's configuration (config.original.json: the first one, once a
                               resumed session changed it; history.jsonl: one line per session)
    checkpoints/last.ckpt      written at the end of every epoch and when training stops (Ctrl-C,
                               SIGTERM, time limit)
    checkpoints/best-*.ckpt    the best checkpoint by the task's monitored metric
    csv/version_N/metrics.csv  Lightning's CSV log, one version per session (a resume adds one)
    curves.png, summary.json   written when a session finishes, over all its sessions' logs

``resume`` continues from the checkpoint that got furthest by the epoch and step recorded inside it
(whatever the files are called), ``resume_from`` from a given file.  A resumed session may change
what :data:`RESUME_POLICY` allows (applied and recorded); any other difference from the
checkpoint's configuration is refused with the list of differences, or applied with ``override``.
A folder that holds a run is refused without ``resume`` or ``overwrite``; ``fast_dev_run`` writes
nothing anywhere.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from atompaint.training.config import RunConfig
from structlayers.base import count_params
from structlayers.lightning import ResumePolicy, RunDirectory, RunPlan, plot_curves, run_csv_files, run_title
from structlayers.lightning.callbacks import RunCheckpoints, build_trainer, fit_run
from structlayers.lightning.checkpoints import check_state_dict, load_checkpoint

#: What a resumed run may change (the new values apply and are recorded): optimisation settings
#: that continue the same training (learning rate, weight decay, the plateau schedule's
#: settings), its length and hardware, and how the data is found and loaded (where the structures
#: and the index are, loader workers, structures cached per worker).  The encoder, head, data
#: (images, directions, sizes, batch size), optimiser type, schedule, seed and fine-tuning must
#: match the checkpoint's run unless the session overrides.  ``name`` places the run folder and is
#: not compared (a renamed copy of a run resumes).
RESUME_POLICY = ResumePolicy(
    changeable=("optim.lr", "optim.weight_decay", "optim.momentum", "optim.plateau_*", "trainer.max_epochs",
                "trainer.max_time", "trainer.limit_*", "trainer.gradient_clip_val", "trainer.accelerator",
                "trainer.devices", "trainer.strategy", "trainer.num_nodes", "trainer.precision",
                "trainer.log_every_n_steps", "data.structure_dir", "data.index_path", "data.root",
                "data.num_workers", "data.cache_structures"),
    ignored=("name", "trainer.progress_bar", "trainer.fast_dev_run"),
)
#: The trainer's own outputs in a run folder (removed with the run by ``overwrite``).
RUN_OUTPUTS = ("csv", "curves.png", "summary.json")


@dataclass
class RunResult:
    """What a training session left behind (nothing on disk for a ``fast_dev_run``)."""

    run_dir: Path
    seconds: float
    metrics: dict[str, float]
    #: This session's CSV log folder (``csv/version_N``).
    log_dir: Path | None = None
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    curves: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Training stopped on Ctrl-C or SIGTERM (``last_checkpoint`` holds where; no summary is written).
    interrupted: bool = False
    #: The signal that interrupted training.
    signal: int | None = None


def run_directory(config: RunConfig, out_dir: str | os.PathLike[str]) -> RunDirectory:
    """The run folder of ``config``: ``<out_dir>/<config.name>``."""
    return RunDirectory(Path(out_dir) / config.name, RUN_OUTPUTS)


def plan_run(config: RunConfig, out_dir: str | os.PathLike[str], *, resume: bool = False,
             resume_from: str | os.PathLike[str] | None = None, overwrite: bool = False,
             override: bool = False) -> RunPlan | None:
    """Check the run folder for ``config`` before any work (reads only; see
    :meth:`structlayers.lightning.RunDirectory.plan`); ``None`` for a ``fast_dev_run`` that resumes nothing."""
    if config.trainer.fast_dev_run and not (resume or resume_from):
        return None
    return run_directory(config, out_dir).plan(
        config.to_dict(), resume=resume, resume_from=resume_from, overwrite=overwrite, override=override,
        policy=RESUME_POLICY, use_checkpoint="resume from it with --resume-from {path}",
    )


def train(
    config: RunConfig,
    *,
    out_dir: str | os.PathLike[str] = "runs",
    resume: bool = False,
    resume_from: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    override: bool = False,
    datamodule: pl.LightningDataModule | None = None,
    callbacks: list[Callback] | None = None,
) -> RunResult:
    """Train ``config`` in its run folder ``<out_dir>/<config.name>`` (see the module docs).

    Everything the Trainer does is ``config.trainer`` (devices, strategy, ``fast_dev_run``, progress
    bar, ...); extra ``callbacks`` go to it too.  The folder, and the checkpoint a resumed session
    continues from, are checked before any data is prepared: a conflicting configuration, an
    unreadable checkpoint or weights of another shape are one-line ``ValueError``\\ s.
    """
    plan = plan_run(config, out_dir, resume=resume, resume_from=resume_from, overwrite=overwrite,
                    override=override)
    fast = bool(config.trainer.fast_dev_run)
    directory = run_directory(config, out_dir)
    if plan is not None:
        directory.clear(plan)
    run_dir = directory.path
    pl.seed_everything(config.seed, workers=True, verbose=False)
    keeper = None if fast else RunCheckpoints(directory, plan)
    monitor, mode = config.monitor
    best = ModelCheckpoint(dirpath=directory.checkpoints, filename="best-epoch={epoch}-step={step}",
                           auto_insert_metric_name=False, monitor=monitor, mode=mode, save_top_k=1)
    logger = None if fast else CSVLogger(run_dir, name="csv")
    lr_monitor = LearningRateMonitor(logging_interval="epoch")
    run_callbacks: list[Callback] = [] if keeper is None else [best, keeper, lr_monitor]
    # The trainer before the data: bad devices or accelerators fail before anything is prepared.
    trainer = build_trainer(
        **config.trainer.trainer_kwargs(),
        logger=logger or False,
        callbacks=[*run_callbacks, *(callbacks or [])],
        enable_checkpointing=not fast,
        enable_model_summary=False,
        default_root_dir=None if fast else run_dir,
    )
    datamodule = datamodule if datamodule is not None else config.build_datamodule()
    task = config.build_module(datamodule, resuming=plan is not None and plan.checkpoint is not None)
    ckpt = plan.checkpoint.path if plan is not None and plan.checkpoint is not None else None
    if ckpt is not None:
        check_state_dict(task, load_checkpoint(ckpt)["state_dict"], f"checkpoint {ckpt}")
    if plan is not None and rank_zero_only.rank == 0:
        print(plan.describe(), file=sys.stderr)

    start = time.perf_counter()
    interrupted = fit_run(trainer, task, keeper, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    seconds = time.perf_counter() - start

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    result = RunResult(run_dir=run_dir, seconds=seconds, metrics=metrics)
    if keeper is None or logger is None:
        return result
    result.log_dir = Path(logger.log_dir)
    result.last_checkpoint = keeper.last_path if keeper.last_path.is_file() else None
    result.best_checkpoint = Path(best.best_model_path) if best.best_model_path else None
    if interrupted:
        result.interrupted, result.signal = True, keeper.stop_signal
        return result
    result.extra = {"params": count_params(task), "best_score": float(best.best_model_score or float("nan"))}
    if trainer.is_global_zero:
        logger.save()
        csv_files = run_csv_files(run_dir / "csv")
        if csv_files:
            title = run_title(config.task, config.name, config.seed)
            result.curves = plot_curves(csv_files, run_dir / "curves.png", title=title)
        summary = {
            "name": config.name, "task": config.task, "seed": config.seed, "epochs": trainer.current_epoch,
            "global_step": trainer.global_step, "seconds": round(seconds, 1), "metrics": metrics,
            "last_checkpoint": str(result.last_checkpoint), "best_checkpoint": str(result.best_checkpoint),
            "resumed_from": None if plan is None or plan.checkpoint is None else str(plan.checkpoint.path),
            **result.extra,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return result
