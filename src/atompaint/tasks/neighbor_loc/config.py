"""The training config of the neighbor-location task (the YAML files in experiments/neighbor_loc/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from atompaint.tasks.neighbor_loc.dataset import NeighborLocDataConfig
from atompaint.training.config import RunConfig

if TYPE_CHECKING:
    import lightning.pytorch as pl


@dataclass
class NeighborLocRunConfig(RunConfig):
    """Encoder, head, optimiser and trainer of :class:`RunConfig`, and the view pairs of ``data``.

    The best checkpoint is the one of highest validation accuracy.
    """

    data: NeighborLocDataConfig = field(default_factory=NeighborLocDataConfig)
    task: Literal["neighbor-loc"] = "neighbor-loc"

    monitor: ClassVar[tuple[str, str]] = ("val/acc", "max")

    def build_datamodule(self) -> pl.LightningDataModule:
        from atompaint.tasks.neighbor_loc.datamodule import NeighborLocDataModule

        return NeighborLocDataModule(self.data)

    def build_module(self, datamodule: pl.LightningDataModule, *, resuming: bool = False) -> pl.LightningModule:
        """The LightningModule; the class count comes from the data module."""
        from atompaint.tasks.neighbor_loc.module import NeighborLocTask

        num_classes = getattr(datamodule, "num_classes", None)
        if num_classes is None:
            raise ValueError("the neighbor-loc DataModule must expose `num_classes`")
        return NeighborLocTask(self, int(num_classes))
