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

from atompaint.training.config import LBADataConfig, NeighborLocDataConfig, TrainConfig
from atompaint.training.curves import plot_curves
from atompaint.training.tasks import LBATask, NeighborLocTask


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


def build_datamodule(config: TrainConfig) -> pl.LightningDataModule:
    """The DataModule a config describes (real structures for neighbor-loc, LMDBs for LBA)."""
    data = config.data
    if isinstance(data, NeighborLocDataConfig):
        from atompaint.data import NeighborLocConfig, NeighborLocDataModule

        if not data.structure_dir:
            raise ValueError("data.structure_dir is required for neighbor-loc training")
        if not Path(data.structure_dir).is_dir():
            raise FileNotFoundError(f"structure directory not found: {data.structure_dir}")
        example_config = NeighborLocConfig(
            image=data.image.to_params(), directions=data.directions, distance_A=data.distance_A,
            max_translation_A=data.max_translation_A, max_rotation_deg=data.max_rotation_deg,
        )
        return NeighborLocDataModule.from_structure_dir(
            data.structure_dir, example_config, index_path=data.index_path, batch_size=data.batch_size,
            num_workers=data.num_workers, train_size=data.train_size, val_size=data.val_size,
            val_fraction=data.val_fraction, seed=data.seed,
        )
    if isinstance(data, LBADataConfig):
        from atompaint.lba import LBADataModule

        return LBADataModule(
            data.root, split=data.split, image=data.image.to_params(), ligand_channels=data.ligand_channels,
            batch_size=data.batch_size, num_workers=data.num_workers,
        )
    raise TypeError(f"unsupported data config {type(data).__name__}")


def build_task(config: TrainConfig, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    """The LightningModule for ``config.task``; neighbor-loc reads the class count from the data."""
    if config.task == "neighbor-loc":
        num_classes = getattr(datamodule, "num_classes", None)
        if num_classes is None:
            raise ValueError("the neighbor-loc DataModule must expose `num_classes`")
        return NeighborLocTask(config.to_dict(), int(num_classes))
    return LBATask(config.to_dict())


def find_last_checkpoint(output_dir: str | os.PathLike[str], name: str) -> Path | None:
    """The ``last.ckpt`` of the newest version of run ``name`` under ``output_dir``."""
    versions = sorted(
        Path(output_dir, name).glob("version_*/checkpoints/last.ckpt"),
        key=lambda p: int(re.sub(r"\D", "", p.parent.parent.name) or 0),
    )
    return versions[-1] if versions else None


def train(
    config: TrainConfig,
    *,
    output_dir: str | os.PathLike[str] = "runs",
    devices: str | int | None = None,
    strategy: str | None = None,
    accelerator: str | None = None,
    resume: str | None = None,
    fast_dev_run: int | bool = False,
    datamodule: pl.LightningDataModule | None = None,
    enable_progress_bar: bool = True,
) -> RunResult:
    """Train ``config`` and return where the logs, checkpoints and curves are.

    ``resume`` is a checkpoint path or ``"last"`` (the newest ``last.ckpt`` of this run name).
    A resumed run logs into a new version directory (Lightning's CSV logger would overwrite the
    old ``metrics.csv``); its curves join the metrics of the run it resumed.
    """
    trainer_cfg = config.trainer
    pl.seed_everything(trainer_cfg.seed, workers=True)
    output_dir = Path(output_dir)
    ckpt_path: Path | None = None
    if resume:
        ckpt_path = find_last_checkpoint(output_dir, config.name) if resume == "last" else Path(resume)
        if ckpt_path is None or not ckpt_path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from: {resume}")
    previous_metrics = ckpt_path.parent.parent / "metrics.csv" if ckpt_path is not None else None
    logger = CSVLogger(save_dir=str(output_dir), name=config.name)
    log_dir = Path(logger.log_dir)

    datamodule = datamodule if datamodule is not None else build_datamodule(config)
    task = build_task(config, datamodule)
    monitor, mode = ("val/acc", "max") if config.task == "neighbor-loc" else ("val/loss", "min")
    checkpoint = ModelCheckpoint(
        dirpath=log_dir / "checkpoints", filename="epoch={epoch}-step={step}", auto_insert_metric_name=False,
        monitor=monitor, mode=mode, save_last=True, save_top_k=1,
    )
    trainer = pl.Trainer(
        default_root_dir=str(output_dir),
        logger=logger,
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="epoch")],
        max_epochs=trainer_cfg.max_epochs,
        max_time=trainer_cfg.max_time,
        accelerator=accelerator or trainer_cfg.accelerator,
        devices=devices if devices is not None else trainer_cfg.devices,
        strategy=strategy or trainer_cfg.strategy,
        precision=trainer_cfg.precision,
        limit_train_batches=trainer_cfg.limit_train_batches,
        limit_val_batches=trainer_cfg.limit_val_batches,
        log_every_n_steps=trainer_cfg.log_every_n_steps,
        gradient_clip_val=trainer_cfg.gradient_clip_val,
        fast_dev_run=fast_dev_run,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    seconds = time.perf_counter() - start

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    result = RunResult(log_dir=log_dir, seconds=seconds, metrics=metrics)
    if not fast_dev_run:
        result.last_checkpoint = Path(checkpoint.last_model_path) if checkpoint.last_model_path else None
        result.best_checkpoint = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
        metrics_csv = log_dir / "metrics.csv"
        if metrics_csv.is_file():
            history = [previous_metrics] if previous_metrics is not None and previous_metrics.is_file() else []
            result.curves = plot_curves([*history, metrics_csv], log_dir / "curves.png")
        params = sum(p.numel() for p in task.parameters())
        result.extra = {"params": params, "best_score": float(checkpoint.best_model_score or float("nan"))}
        summary = {
            "name": config.name, "task": config.task, "seconds": round(seconds, 1), "metrics": metrics,
            "best_checkpoint": str(result.best_checkpoint), "resumed_from": str(ckpt_path) if ckpt_path else None,
            **result.extra,
        }
        (log_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return result
