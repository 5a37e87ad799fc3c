"""The LightningModule of the sanity runs: an image classifier around any ``nn.Module``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning as L
import torch.nn.functional as F
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor, nn

from structlayers.lightning.optim import OptimConfig
from structlayers.lightning.resume import OPTIM_KEY, optim_record, retarget_optimizer


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of ``model``; logs ``train/loss``, ``train/acc``, ``val/loss`` and
    ``val/acc`` (epoch means, and the training loss per step)."""

    def __init__(self, model: nn.Module, optim: OptimConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.optim = optim or OptimConfig()
        self.save_hyperparameters({"optim": asdict(self.optim)})

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, sync_dist=not on_step)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, sync_dist=not on_step)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        return self.optim.configure(self.parameters(), self.trainer.estimated_stepping_batches)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[OPTIM_KEY] = optim_record(self.optim, self.trainer.estimated_stepping_batches)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run follows the current optimisation settings and length (a new learning rate,
        more epochs, another optimiser), not the ones stored in the checkpoint."""
        previous = checkpoint.get("hyper_parameters", {}).get("optim")
        for note in retarget_optimizer(checkpoint, self.optim, self.trainer.estimated_stepping_batches, previous):
            rank_zero_info(f"resume: {note}")
