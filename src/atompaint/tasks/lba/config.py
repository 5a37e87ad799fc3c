"""The training config of the LBA task (experiments/lba/), with its fine-tuning section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from atompaint.tasks.lba.dataset import LBADataConfig
from atompaint.training.config import RunConfig

if TYPE_CHECKING:
    import lightning.pytorch as pl


@dataclass
class FinetuneConfig:
    """Start the encoder from a neighbor-location checkpoint, frozen for the first epochs."""

    pretrained: str | None = None
    freeze_encoder_epochs: int = 0

    def __post_init__(self) -> None:
        if self.freeze_encoder_epochs < 0:
            raise ValueError(f"freeze_encoder_epochs must be >= 0, got {self.freeze_encoder_epochs}")


@dataclass
class LBARunConfig(RunConfig):
    """Encoder, head, optimiser and trainer of :class:`RunConfig`, the Atom3D ``data`` and ``finetune``.

    The best checkpoint is the one of lowest validation loss.
    """

    data: LBADataConfig = field(default_factory=LBADataConfig)
    task: Literal["lba"] = "lba"
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def build_datamodule(self) -> pl.LightningDataModule:
        from atompaint.tasks.lba.datamodule import LBADataModule

        return LBADataModule(self.data)

    def build_module(self, datamodule: pl.LightningDataModule, *, resuming: bool = False) -> pl.LightningModule:
        """The LightningModule; a resumed run does not read ``finetune.pretrained`` (the weights
        come from the run's checkpoint; the pretrained file may have moved since)."""
        from atompaint.tasks.lba.module import LBATask

        return LBATask(self, load_pretrained=not resuming)
