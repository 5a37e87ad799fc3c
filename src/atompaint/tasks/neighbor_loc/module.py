"""The LightningModule of the neighbor-location task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor

from atompaint.encoders import build_encoder
from atompaint.tasks.neighbor_loc.controls import chance_accuracy, mask_logits, rule_predictions
from atompaint.tasks.neighbor_loc.geometry import neighbor_directions
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from atompaint.training.config import RunConfig
from atompaint.training.module import TaskModule


class NeighborLocTask(TaskModule):
    """Cross-entropy over the neighbor directions; logs loss and accuracy for train and val.

    Batches are ``(view_a, view_b, label[, b_draws, b_fallback[, mask]])``, the format of
    :class:`atompaint.tasks.neighbor_loc.NeighborLocDataModule`.  ``mask`` (bool ``(B, K)``) holds the
    directions each label could take; logits outside it are masked in the loss and the accuracy.
    With ``b_draws`` and ``b_fallback``, each epoch also logs how the examples were drawn:
    ``{stage}/b_redrawn`` (share drawn more than once), ``{stage}/b_fallback`` (share that never
    satisfied the construction) and ``{stage}/b_draws`` (mean draws per example).

    Validation also logs the controls of :mod:`~atompaint.tasks.neighbor_loc.evaluate` on each batch:
    ``val/acc_{a,b}_{empty,shuffled}`` (a view replaced by an empty image, or by the same view of the
    next example of the batch), ``val/acc_rule_*`` (the zero-parameter density rules), ``val/chance``
    (mean ``1 / |S|``).  ``atompaint evaluate`` scores the same controls over a whole validation set,
    with derangements across it, and reports the lift over the best of them.
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
        mask = batch[5] if len(batch) >= 6 else None
        features = self.model.features(view_a, view_b)
        logits = mask_logits(self.model.head(features), mask)
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
        if stage == "val":
            self._log_controls(view_a, view_b, label, mask, features, logits)
        return loss

    @torch.no_grad()
    def _log_controls(
        self, view_a: Tensor, view_b: Tensor, label: Tensor, mask: Tensor | None, features: Tensor, logits: Tensor
    ) -> None:
        n = len(label)
        if n < 2:  # no other example to take a view from
            return
        fa, fb = features.chunk(2, dim=1)
        empty = self.model.encoder.fields(torch.zeros_like(view_a[:1])).expand(n, -1)
        inputs = {"a_empty": (empty, fb), "a_shuffled": (fa.roll(1, 0), fb),
                  "b_empty": (fa, empty), "b_shuffled": (fa, fb.roll(1, 0))}
        accuracy = {name: (mask_logits(self.model.head(torch.cat(pair, dim=1)), mask).argmax(1) == label).float().mean()
                    for name, pair in inputs.items()}
        directions = neighbor_directions(self.config.data.directions) if hasattr(self.config, "data") else None
        if directions is not None and len(directions) == logits.shape[1]:
            for name, predicted in rule_predictions(view_a, view_b, directions, mask).items():
                accuracy[f"rule_{name}"] = (predicted == label).float().mean()
        chance = chance_accuracy(mask.cpu()) if mask is not None else 1 / logits.shape[1]
        for name, value in accuracy.items():
            self.log(f"val/acc_{name}", value, on_step=False, on_epoch=True, batch_size=n)
        self.log("val/chance", chance, on_step=False, on_epoch=True, batch_size=n)

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val", self.val_acc)
