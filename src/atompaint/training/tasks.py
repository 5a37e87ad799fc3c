"""LightningModules of the two tasks; both are built from a config dict so checkpoints rebuild themselves."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor

from atompaint.encoders import build_encoder
from atompaint.encoders.architectures import CACHED_BUFFERS
from atompaint.heads import AffinityRegressor, NeighborLocClassifier
from atompaint.training.config import TrainConfig, config_from_dict


class _Task(pl.LightningModule):
    """Shared optimizer/scheduler setup."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config: TrainConfig = config_from_dict(config)

    def configure_optimizers(self) -> Any:
        optim = self.config.optim
        optimizer = torch.optim.AdamW(self.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        if optim.scheduler is None:
            return optimizer
        if optim.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.config.trainer.max_epochs))
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}


class NeighborLocTask(_Task):
    """Cross-entropy over the neighbor directions; logs loss and accuracy for train and val.

    Batches are ``(view_a, view_b, label)``, the format of :class:`atompaint.data.NeighborLocDataModule`.
    """

    def __init__(self, config: dict[str, Any], num_classes: int) -> None:
        super().__init__(config)
        self.save_hyperparameters({"config": config, "num_classes": num_classes})
        self.model = NeighborLocClassifier(build_encoder(self.config.encoder), num_classes, self.config.head)
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)

    def forward(self, view_a: Tensor, view_b: Tensor) -> Tensor:
        return self.model(view_a, view_b)

    def _step(self, batch: tuple[Tensor, Tensor, Tensor], stage: str, metric: torchmetrics.Metric) -> Tensor:
        view_a, view_b, label = batch
        logits = self(view_a, view_b)
        loss = F.cross_entropy(logits, label)
        metric(logits, label)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(label))
        self.log(f"{stage}/acc", metric, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(label))
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val", self.val_acc)


class LBATask(_Task):
    """Regression of ``neglog_aff`` (MSE loss) with RMSE, MAE, Pearson and Spearman metrics.

    With ``finetune.pretrained`` the encoder starts from a neighbor-location checkpoint and stays
    frozen for the first ``finetune.freeze_encoder_epochs`` epochs, so the randomly initialised
    head does not wreck the pretrained features (seed 001).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.model = AffinityRegressor(build_encoder(self.config.encoder), self.config.head)
        if self.config.finetune.pretrained:
            load_pretrained_encoder(self.model.encoder, self.config.finetune.pretrained)
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_metrics": torchmetrics.MetricCollection({
                "rmse": torchmetrics.MeanSquaredError(squared=False),
                "mae": torchmetrics.MeanAbsoluteError(),
                "pearson": torchmetrics.PearsonCorrCoef(),
                "spearman": torchmetrics.SpearmanCorrCoef(),
            }, prefix=f"{stage}/")
            for stage in ("train", "val", "test")
        })

    @property
    def encoder_frozen(self) -> bool:
        return self.current_epoch < self.config.finetune.freeze_encoder_epochs

    def on_train_epoch_start(self) -> None:
        frozen = self.encoder_frozen
        for param in self.model.encoder.parameters():
            param.requires_grad_(not frozen)
        # Frozen also means frozen batch-norm statistics.
        self.model.encoder.train(not frozen)
        self.log("train/encoder_frozen", float(frozen), on_step=False, on_epoch=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        pred = self(x)
        loss = F.mse_loss(pred, y)
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(pred.detach().float(), y.float())
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def _log_epoch(self, stage: str) -> None:
        metrics = self.metrics[f"{stage}_metrics"]
        if next(iter(metrics.values())).update_count:
            self.log_dict(metrics.compute(), prog_bar=stage == "val")
        metrics.reset()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")


def load_pretrained_encoder(encoder: torch.nn.Module, checkpoint: str) -> None:
    """Copy the encoder weights of a :class:`NeighborLocTask` checkpoint into ``encoder``."""
    from pathlib import Path

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {checkpoint}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    prefix = "model.encoder."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{checkpoint} holds no encoder weights (keys starting with {prefix!r})")
    try:
        missing, unexpected = encoder.load_state_dict(weights, strict=False)
    except RuntimeError as err:
        raise ValueError(f"{checkpoint} does not fit this encoder (same architecture and channels?): {err}") from err
    relevant_missing = [k for k in missing if not k.endswith(CACHED_BUFFERS)]
    if relevant_missing or unexpected:
        raise ValueError(
            f"{checkpoint} does not match this encoder: missing {relevant_missing[:5]}, unexpected {unexpected[:5]}"
        )
