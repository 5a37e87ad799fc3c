"""The LightningModule of the amino-acid environment task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
import torchmetrics
from torch import Tensor

from atompaint.encoders import build_encoder
from atompaint.tasks.residue_env.model import ResidueEnvClassifier
from atompaint.training.config import RunConfig
from atompaint.training.module import StageMetricsTask


class ResidueEnvTask(StageMetricsTask):
    """Cross-entropy over the 20 amino acids; logs the loss, accuracy (``acc``, over examples) and
    macro accuracy (``acc_macro``, the mean of the per-class recalls) of train, val and test.

    Batches are ``(image, label)``, the format of
    :class:`atompaint.tasks.residue_env.ResidueEnvDataModule`.
    """

    def __init__(self, config: RunConfig | Mapping[str, Any]) -> None:
        super().__init__(config)
        self.model = ResidueEnvClassifier(build_encoder(self.config.encoder), self.config.data.num_classes,
                                          self.config.head)

    def build_metrics(self) -> dict[str, torchmetrics.Metric]:
        k = self.config.data.num_classes
        return {"acc": torchmetrics.Accuracy(task="multiclass", num_classes=k),
                "acc_macro": torchmetrics.Accuracy(task="multiclass", num_classes=k, average="macro")}

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def step(self, batch: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        image, label = batch[:2]
        logits = self(image)
        return F.cross_entropy(logits, label), logits, label
