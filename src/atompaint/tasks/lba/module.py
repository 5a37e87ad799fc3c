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
from atompaint.training.module import StageMetricsTask
from structlayers.lightning.checkpoints import read_state_dict


class LBATask(StageMetricsTask):
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

    def build_metrics(self) -> dict[str, torchmetrics.Metric]:
        return {"rmse": torchmetrics.MeanSquaredError(squared=False), "mae": torchmetrics.MeanAbsoluteError(),
                "pearson": torchmetrics.PearsonCorrCoef(), "spearman": torchmetrics.SpearmanCorrCoef()}

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

    def step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch
        pred = self(x)
        return F.mse_loss(pred, y), pred.float(), y.float()


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
