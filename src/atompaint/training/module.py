"""The LightningModule base of every task: built from its run config, which it saves as plain data
so that a checkpoint rebuilds its own model (``Task.load_from_checkpoint(path)``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl

from atompaint.training.config import RunConfig, config_from_dict


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
