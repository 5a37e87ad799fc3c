"""The LightningModule of the amino-acid environment task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor

from atompaint.encoders import build_encoder
from atompaint.tasks.residue_env.model import ResidueEnvClassifier
from atompaint.training.config import RunConfig
from atompaint.training.module import TaskModule


class ResidueEnvTask(TaskModule):
    """Cross-entropy over the 20 amino acids; logs the loss, accuracy (``acc``, over examples) and
    macro accuracy (``acc_macro``, the mean of the per-class recalls) of train, val and test.

    Batches are ``(image, label)``, the format of
    :class:`atompaint.tasks.residue_env.ResidueEnvDataModule`.
    """

    def __init__(self, config: RunConfig | Mapping[str, Any]) -> None:
        super().__init__(config)
        num_classes = self.config.data.num_classes
        self.model = ResidueEnvClassifier(build_encoder(self.config.encoder), num_classes, self.config.head)
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_metrics": torchmetrics.MetricCollection({
                "acc": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes),
                "acc_macro": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes, average="macro"),
            }, prefix=f"{stage}/")
            for stage in ("train", "val", "test")
        })

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch: Sequence[Tensor], stage: str) -> Tensor:
        image, label = batch[:2]
        logits = self(image)
        loss = F.cross_entropy(logits, label)
        self.metrics[f"{stage}_metrics"].update(logits.detach(), label)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True, batch_size=len(label))
        return loss

    def _log_epoch(self, stage: str) -> None:
        metrics = self.metrics[f"{stage}_metrics"]
        if next(iter(metrics.values())).update_count:
            self.log_dict(metrics.compute(), prog_bar=stage == "val")
        metrics.reset()

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
