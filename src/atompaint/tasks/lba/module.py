"""The LightningModule of the LBA task, and loading a pretrained encoder into it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor

from atompaint.encoders import build_encoder
from atompaint.encoders.architectures import CACHED_BUFFERS
from atompaint.tasks.lba.model import AffinityRegressor
from atompaint.training.config import RunConfig
from atompaint.training.module import TaskModule
from structlayers.runs.checkpoints import read_state_dict


class LBATask(TaskModule):
    """Regression of ``neglog_aff`` (MSE loss) with RMSE, MAE, Pearson and Spearman metrics.

    With ``finetune.pretrained`` the encoder starts from a neighbor-location checkpoint and stays
    frozen for the first ``finetune.freeze_encoder_epochs`` epochs, so the large gradients of the
    randomly initialised head do not wreck the pretrained features before the head has settled.
    ``load_pretrained=False`` skips reading it, for weights that come from a checkpoint
    (``LBATask.load_from_checkpoint(path, load_pretrained=False)``, a resumed run).
    """

    def __init__(self, config: RunConfig | Mapping[str, Any], load_pretrained: bool = True) -> None:
        super().__init__(config)
        self.model = AffinityRegressor(build_encoder(self.config.encoder), self.config.head)
        if self.config.finetune.pretrained and load_pretrained:
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
    """Copy the encoder weights of a neighbor-location checkpoint into ``encoder``."""
    state, contents = read_state_dict(checkpoint, "pretrained checkpoint")
    prefix = "model.encoder."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    source = f"pretrained checkpoint {checkpoint} ({contents})"
    if not weights:
        raise ValueError(f"{source} holds no encoder weights (keys starting with {prefix!r})")
    expected = encoder.state_dict()
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in weights.items()
              if k in expected and v.shape != expected[k].shape]
    missing = [k for k in expected if k not in weights and not k.endswith(CACHED_BUFFERS)]
    unexpected = [k for k in weights if k not in expected]
    if shapes or missing or unexpected:
        raise ValueError(f"{source} does not fit this encoder (same architecture and channels?): {len(shapes)} "
                         f"of another shape {shapes[:3]}, missing {missing[:3]}, unexpected {unexpected[:3]}")
    encoder.load_state_dict(weights, strict=False)
