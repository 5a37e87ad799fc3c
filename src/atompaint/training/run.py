"""Run a training job: data, task, Lightning trainer with CSV logs, checkpoints, resume and curves."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from atompaint.training.config import RunConfig
from structlayers.base import count_params
from structlayers.runs import plot_curves


@dataclass
class RunResult:
    """What a finished run left behind."""

    log_dir: Path
    seconds: float
    metrics: dict[str, float]
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    curves: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def find_last_checkpoint(out_dir: str | os.PathLike[str], name: str) -> Path | None:
    """The ``last.ckpt`` of the newest version of run ``name`` under ``out_dir``."""
    versions = sorted(
        Path(out_dir, name).glob("version_*/checkpoints/last.ckpt"),
        key=lambda p: int(re.sub(r"\D", "", p.parent.parent.name) or 0),
    )
    return versions[-1] if versions else None


def _trainer(config: RunConfig, **kwargs: Any) -> pl.Trainer:
    """``lightning.Trainer`` of ``config.trainer``; Lightning's configuration errors (devices 0, a GPU
    accelerator without a GPU) become ``ValueError`` naming the setting."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    options = config.trainer.trainer_kwargs()
    accelerator = options.get("accelerator", "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"trainer.accelerator={accelerator!r}: no CUDA GPU is available on this machine; "
                         "use --accelerator cpu or auto")
    try:
        return pl.Trainer(enable_model_summary=False, **kwargs, **options)
    except MisconfigurationException as err:
        settings = ", ".join(f"{k}={options[k]!r}" for k in ("accelerator", "devices", "strategy") if k in options)
        raise ValueError(f"trainer settings ({settings}): {err}") from None


def train(
    config: RunConfig,
    *,
    out_dir: str | os.PathLike[str] = "runs",
    resume: str | None = None,
    datamodule: pl.LightningDataModule | None = None,
) -> RunResult:
    """Train ``config`` and return where the logs, checkpoints and curves are.

    Everything the Trainer does is ``config.trainer`` (devices, strategy, ``fast_dev_run``, progress
    bar, ...).  ``resume`` is a checkpoint path or ``"last"`` (the newest ``last.ckpt`` of this run
    name).  A resumed run logs into a new version directory (Lightning's CSV logger would overwrite
    the old ``metrics.csv``); its curves join the metrics of the run it resumed.
    """
    pl.seed_everything(config.seed, workers=True)
    out_dir = Path(out_dir)
    ckpt_path: Path | None = None
    if resume:
        ckpt_path = find_last_checkpoint(out_dir, config.name) if resume == "last" else Path(resume)
        if ckpt_path is None or not ckpt_path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from: {resume}")
    previous_metrics = ckpt_path.parent.parent / "metrics.csv" if ckpt_path is not None else None
    logger = CSVLogger(save_dir=str(out_dir), name=config.name)
    log_dir = Path(logger.log_dir)

    monitor, mode = config.monitor
    checkpoint = ModelCheckpoint(
        dirpath=log_dir / "checkpoints", filename="epoch={epoch}-step={step}", auto_insert_metric_name=False,
        monitor=monitor, mode=mode, save_last=True, save_top_k=1,
    )
    # The trainer first: bad devices or accelerators fail before any data is prepared.
    trainer = _trainer(config, default_root_dir=str(out_dir), logger=logger,
                       callbacks=[checkpoint, LearningRateMonitor(logging_interval="epoch")])
    datamodule = datamodule if datamodule is not None else config.build_datamodule()
    task = config.build_module(datamodule)
    start = time.perf_counter()
    trainer.fit(task, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    seconds = time.perf_counter() - start

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    result = RunResult(log_dir=log_dir, seconds=seconds, metrics=metrics)
    if not config.trainer.fast_dev_run:
        result.last_checkpoint = Path(checkpoint.last_model_path) if checkpoint.last_model_path else None
        result.best_checkpoint = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
        metrics_csv = log_dir / "metrics.csv"
        if metrics_csv.is_file():
            history = [previous_metrics] if previous_metrics is not None and previous_metrics.is_file() else []
            result.curves = plot_curves([*history, metrics_csv], log_dir / "curves.png", title=config.name)
        result.extra = {"params": count_params(task),
                        "best_score": float(checkpoint.best_model_score or float("nan"))}
        summary = {
            "name": config.name, "task": config.task, "seconds": round(seconds, 1), "metrics": metrics,
            "best_checkpoint": str(result.best_checkpoint), "resumed_from": str(ckpt_path) if ckpt_path else None,
            **result.extra,
        }
        (log_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return result
