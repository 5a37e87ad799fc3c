"""The LightningModule of the neighbor-location task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
import torchmetrics
from torch import Tensor

from atompaint.encoders import build_encoder
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from atompaint.training.config import RunConfig
from atompaint.training.module import TaskModule


class NeighborLocTask(TaskModule):
    """Cross-entropy over the neighbor directions; logs loss and accuracy for train and val.

    Batches are ``(view_a, view_b, label[, b_draws, b_fallback])``, the format of
    :class:`atompaint.tasks.neighbor_loc.NeighborLocDataModule`.  With the last two, each epoch also
    logs how view B was drawn: ``{stage}/b_redrawn`` (share of examples whose B was drawn more than
    once), ``{stage}/b_fallback`` (share whose B never passed the density criterion) and
    ``{stage}/b_draws`` (mean draws per example).
    """

    def __init__(self, config: RunConfig | Mapping[str, Any], num_classes: int) -> None:
        super().__init__(config)
        self.save_hyperparameters({"config": self.config.to_dict(), "num_classes": num_classes})
        self.model = NeighborLocClassifier(build_encoder(self.config.encoder), num_classes, self.config.head)
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)

    def forward(self, view_a: Tensor, view_b: Tensor) -> Tensor:
        return self.model(view_a, view_b)

    def _step(self, batch: Sequence[Tensor], stage: str, metric: torchmetrics.Metric) -> Tensor:
        view_a, view_b, label = batch[:3]
        logits = self(view_a, view_b)
        loss = F.cross_entropy(logits, label)
        metric(logits, label)
        on_step = stage == "train"
        n = len(label)
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=n)
        self.log(f"{stage}/acc", metric, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=n)
        if len(batch) >= 5:
            draws, fallback = batch[3].float(), batch[4].float()
            for name, value in (("b_redrawn", (draws > 1).float()), ("b_fallback", fallback), ("b_draws", draws)):
                self.log(f"{stage}/{name}", value.mean(), on_step=False, on_epoch=True, batch_size=n)
        return loss

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val", self.val_acc)
