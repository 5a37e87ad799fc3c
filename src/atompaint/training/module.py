"""The LightningModule base of every task: built from its run config, which it saves as plain data
so that a checkpoint rebuilds its own model (``Task.load_from_checkpoint(path)``); and the base of
the tasks scored by torchmetrics collections per stage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
import torchmetrics
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor

from atompaint.training.config import RunConfig, config_from_dict
from structlayers.lightning.resume import OPTIM_KEY, optim_record, retarget_optimizer


class TaskModule(pl.LightningModule):
    """Keeps ``self.config`` (a :class:`RunConfig`) and builds the optimiser it describes."""

    def __init__(self, config: RunConfig | Mapping[str, Any]) -> None:
        super().__init__()
        self.config = config_from_dict(config) if isinstance(config, Mapping) else config
        self.save_hyperparameters({"config": self.config.to_dict()})

    def configure_optimizers(self) -> Any:
        """:meth:`structlayers.lightning.OptimConfig.configure` over the run's optimiser steps; the
        ``plateau`` schedule watches the validation loss."""
        return self.config.optim.configure(self.parameters(), self.trainer.estimated_stepping_batches, "val/loss")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[OPTIM_KEY] = optim_record(self.config.optim, self.trainer.estimated_stepping_batches)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run follows the current optimisation settings and length (a new learning
        rate, more epochs), not the ones stored in the checkpoint
        (:func:`structlayers.lightning.retarget_optimizer`).  ``load_from_checkpoint`` (no trainer)
        reads the weights only."""
        if self._trainer is None:
            return
        previous = checkpoint.get("hyper_parameters", {}).get("config", {}).get("optim")
        total = self.trainer.estimated_stepping_batches
        for note in retarget_optimizer(checkpoint, self.config.optim, total, previous):
            rank_zero_info(f"resume: {note}")


#: The stages a :class:`StageMetricsTask` keeps metrics for.
STAGES = ("train", "val", "test")


class StageMetricsTask(TaskModule):
    """A task scored by a torchmetrics collection per stage (``metrics["<stage>_metrics"]``, named
    ``<stage>/<metric>``): every step logs ``<stage>/loss`` and updates the stage's metrics with the
    prediction and target of :meth:`step`; they are logged and reset at the end of each epoch."""

    def __init__(self, config: RunConfig | Mapping[str, Any]) -> None:
        super().__init__(config)
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_metrics": torchmetrics.MetricCollection(self.build_metrics(), prefix=f"{stage}/")
            for stage in STAGES
        })

    def build_metrics(self) -> dict[str, torchmetrics.Metric]:
        """The metrics of one stage, by name (fresh objects on every call)."""
        raise NotImplementedError

    def step(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, prediction, target)`` of one batch; the metrics take the last two."""
        raise NotImplementedError

    def _step(self, batch: Any, stage: str) -> Tensor:
        loss, prediction, target = self.step(batch)
        self.metrics[f"{stage}_metrics"].update(prediction.detach(), target)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
                 batch_size=len(target))
        return loss

    def _log_epoch(self, stage: str) -> None:
        metrics = self.metrics[f"{stage}_metrics"]
        if next(iter(metrics.values())).update_count:
            self.log_dict(metrics.compute(), prog_bar=stage == "val")
        metrics.reset()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
