"""The LightningModule base of every task: built from its run config, which it saves as plain data
so that a checkpoint rebuilds its own model (``Task.load_from_checkpoint(path)``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from atompaint.training.config import RunConfig, config_from_dict
from structlayers.runs.resume import OPTIM_KEY, optim_record, retarget_optimizer


class TaskModule(pl.LightningModule):
    """Keeps ``self.config`` (a :class:`RunConfig`) and builds the optimiser it describes."""

    def __init__(self, config: RunConfig | Mapping[str, Any]) -> None:
        super().__init__()
        self.config = config_from_dict(config) if isinstance(config, Mapping) else config
        self.save_hyperparameters({"config": self.config.to_dict()})

    def configure_optimizers(self) -> Any:
        """:meth:`structlayers.runs.OptimConfig.configure` over the run's optimiser steps; the
        ``plateau`` schedule watches the validation loss."""
        return self.config.optim.configure(self.parameters(), self.trainer.estimated_stepping_batches, "val/loss")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[OPTIM_KEY] = optim_record(self.config.optim, self.trainer.estimated_stepping_batches)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run follows the current optimisation settings and length (a new learning
        rate, more epochs), not the ones stored in the checkpoint
        (:func:`structlayers.runs.retarget_optimizer`).  ``load_from_checkpoint`` (no trainer)
        reads the weights only."""
        if self._trainer is None:
            return
        previous = checkpoint.get("hyper_parameters", {}).get("config", {}).get("optim")
        total = self.trainer.estimated_stepping_batches
        for note in retarget_optimizer(checkpoint, self.config.optim, total, previous):
            rank_zero_info(f"resume: {note}")
