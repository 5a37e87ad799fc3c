"""The training config of the amino-acid environment task (the YAML files in experiments/residue_env/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from atompaint.tasks.residue_env.dataset import ResidueEnvDataConfig
from atompaint.training.config import RunConfig

if TYPE_CHECKING:
    import lightning.pytorch as pl


@dataclass
class ResidueEnvRunConfig(RunConfig):
    """Encoder, head, optimiser and trainer of :class:`RunConfig`, and the residues of ``data``.

    The best checkpoint is the one of lowest validation cross-entropy (smoother than the accuracy
    of a few hundred validation residues).
    """

    data: ResidueEnvDataConfig = field(default_factory=ResidueEnvDataConfig)
    task: Literal["residue-env"] = "residue-env"

    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")

    def build_datamodule(self) -> pl.LightningDataModule:
        from atompaint.tasks.residue_env.datamodule import ResidueEnvDataModule

        return ResidueEnvDataModule(self.data)

    def build_module(self, datamodule: pl.LightningDataModule, *, resuming: bool = False) -> pl.LightningModule:
        from atompaint.tasks.residue_env.module import ResidueEnvTask

        return ResidueEnvTask(self)
