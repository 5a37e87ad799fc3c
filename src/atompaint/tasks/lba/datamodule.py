"""Lightning DataModule of the LBA task: loaders over the train/val/test LMDBs of one split."""

from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from atompaint.tasks.lba.dataset import LBADataConfig, LBADataset, split_paths
from structlayers.utils.sampling import EpochSampler


class LBADataModule(pl.LightningDataModule):
    """Loaders over the train/val/test LMDBs of one sequence-identity split, set by ``config``."""

    def __init__(self, config: LBADataConfig) -> None:
        super().__init__()
        self.config = config
        self.paths = split_paths(config.root, config.split)
        self.datasets: dict[str, LBADataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for name, path in self.paths.items():
            if name not in self.datasets:
                self.datasets[name] = LBADataset(path, self.config.image, ligand_channels=self.config.ligand_channels)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        self.setup()
        batch_size, workers = self.config.batch_size, self.config.num_workers
        size = len(self.datasets[name])
        sampler = EpochSampler(size, self.config.seed) if shuffle else EpochSampler(size, fixed=True)
        return DataLoader(
            self.datasets[name], batch_size=batch_size, sampler=sampler, num_workers=workers,
            persistent_workers=workers > 0, drop_last=shuffle and size > batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
