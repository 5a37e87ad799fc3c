"""Lightning DataModule for the amino-acid environment task.

Batches are :class:`~atompaint.tasks.residue_env.dataset.ResidueEnvItem` tuples ``(image, label)``:
``image`` float32 ``(B, C, L, L, L)``, ``label`` int64 ``(B,)`` in ``[0, 20)``.  The structures of
``data.structure_dir`` are enumerated once (:func:`build_residue_index`, seconds for the 52 chains)
and split train/validation/test by a hash of their names; validation and test examples are fixed,
training examples walk a fresh permutation with fresh orientations every epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningDataModule

from atompaint.origins import find_structures
from atompaint.tasks.common import EpochLoaders, EpochSampler
from atompaint.tasks.neighbor_loc.datamodule import split_structures
from atompaint.tasks.residue_env.dataset import (
    ResidueEnvDataConfig,
    ResidueEnvDataset,
    ResidueIndex,
    build_residue_index,
)
from atompaint.tasks.residue_env.residues import AMINO_ACIDS

SPLITS = ("train", "val", "test")


def split_structures3(names: dict[int, str], val_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """Train, validation and test structures by the hash rule of
    :func:`~atompaint.tasks.neighbor_loc.datamodule.split_structures`: validation is exactly the
    neighbor-location task's validation set at the same ``val_fraction``, test the next structures
    in hash order.  Files of the same name (``1abc.pdb`` and ``1abc.cif``) land in the same split."""
    unique = dict(enumerate(sorted(set(names.values()))))
    rest, val = split_structures(unique, val_fraction)
    share = test_fraction / (1 - val_fraction) if test_fraction > 0 else 0.0
    train, test = split_structures({i: unique[i] for i in rest}, share) if rest else ([], [])
    split_of = {unique[i]: split for split, ids in (("train", train), ("val", val), ("test", test)) for i in ids}
    return {split: sorted(i for i, name in names.items() if split_of[name] == split) for split in SPLITS}


class ResidueEnvDataModule(EpochLoaders, LightningDataModule):
    """Train/validation/test loaders of :class:`ResidueEnvDataset` over the structures of
    ``config.structure_dir``."""

    config: ResidueEnvDataConfig

    def __init__(self, config: ResidueEnvDataConfig = ResidueEnvDataConfig(), *, pin_memory: bool | None = None):
        super().__init__(config, pin_memory=pin_memory)
        if not config.structure_dir:
            raise ValueError("data.structure_dir (the structures to take residues from) is required")
        self.index: ResidueIndex | None = None
        self.splits: dict[str, ResidueIndex] = {}
        self.datasets: dict[str, ResidueEnvDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.index is not None:
            return
        config = self.config
        index = build_residue_index(find_structures(config.structure_dir), config)
        if len(index) == 0:
            raise ValueError(f"{config.structure_dir}: no amino-acid residues in any structure")
        names = dict(enumerate(index.structure_names))
        self.index = index
        self.splits = {k: index.select(v) for k, v in
                       split_structures3(names, config.val_fraction, config.test_fraction).items()}
        for split, part in self.splits.items():
            if len(part) == 0:
                continue
            train = split == "train"
            self.datasets[split] = ResidueEnvDataset(
                part, config, length=config.train_size if train else None, seed=config.seed, split=split,
                permute=train, shuffle_labels=train and config.shuffle_labels,
            )
        if "train" not in self.datasets:
            raise ValueError(f"{config.structure_dir}: no training residues after the split")
        self._train_sampler = EpochSampler(len(self.datasets["train"]))

    def summary(self) -> dict[str, Any]:
        """Structures, examples and class counts per split, and what the residue rules did."""
        self.setup()
        assert self.index is not None
        return {
            "classes": list(AMINO_ACIDS),
            "counts": vars(self.index.counts),
            "failed": [list(f) for f in self.index.failed],
            "splits": {
                split: {"structures": sorted({part.structure_names[i] for i in set(part.structure.tolist())}),
                        "examples": len(part), "class_counts": part.class_counts()}
                for split, part in self.splits.items()
            },
        }

    def dataset(self, split: str) -> ResidueEnvDataset:
        """The dataset of ``split``; a split with no structure is a ``ValueError``."""
        self.setup()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        if split not in self.datasets:
            raise ValueError(f"no {split} structures (data.{split}_fraction is 0 or too few structures)")
        return self.datasets[split]

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        dataset = self.dataset("train")
        assert self._train_sampler is not None
        return self._loader(dataset, self._train_sampler)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._fixed_loader(self.dataset("val"))

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._fixed_loader(self.dataset("test"))
