"""The LBA (ligand binding affinity) task: Atom3D records -> voxel images and ``neglog_aff`` labels.

Each image is centred on the ligand's centroid.  With ``ligand_channels`` the pocket and the ligand
get separate element channels (``2 C`` channels), so the model can tell which atoms belong to the
small molecule; otherwise they share the ``C`` channels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from atompaint.lba.lmdb_io import AtomLMDB
from atompaint.structures import AtomTable
from atompaint.voxelize import ImageParams, voxelize

SPLITS = ("train", "val", "test")


def atoms_from_frame(frame: pd.DataFrame, name: str = "") -> AtomTable:
    """An :class:`AtomTable` from an Atom3D atom DataFrame (columns ``element``, ``x``, ``y``, ``z``)."""
    missing = {"element", "x", "y", "z"} - set(frame.columns)
    if missing:
        raise ValueError(f"Atom3D atom table {name!r} lacks column(s) {sorted(missing)}")
    coords = frame[["x", "y", "z"]].to_numpy(dtype=np.float32)
    elements = frame["element"].astype(str).str.upper().to_numpy()
    atom_names = frame["name"].astype(str).to_numpy() if "name" in frame else elements
    return AtomTable.from_arrays(coords, elements, atom_name=atom_names, name=name)


def affinity_of(record: dict[str, Any]) -> float:
    """The ``neglog_aff`` label of an Atom3D LBA record."""
    scores = record.get("scores")
    if isinstance(scores, dict) and "neglog_aff" in scores:
        return float(scores["neglog_aff"])
    if isinstance(scores, pd.DataFrame) and "neglog_aff" in scores:
        return float(scores["neglog_aff"].iloc[0])
    raise ValueError(f"record {record.get('id')!r} has no scores.neglog_aff label")


class LBADataset(Dataset):
    """``(image (C', L, L, L) float32, neglog_aff float32)`` for every record of an Atom3D LBA LMDB."""

    def __init__(self, lmdb_path: str | os.PathLike[str], image: ImageParams, ligand_channels: bool = True) -> None:
        self.records = AtomLMDB(lmdb_path)
        self.image = image
        self.ligand_channels = ligand_channels

    @property
    def num_channels(self) -> int:
        return self.image.num_channels * (2 if self.ligand_channels else 1)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.records[index]
        rid = str(record.get("id", index))
        pocket = atoms_from_frame(record["atoms_pocket"], f"{rid}/pocket")
        ligand = atoms_from_frame(record["atoms_ligand"], f"{rid}/ligand")
        if len(ligand) == 0:
            raise ValueError(f"record {rid!r} has an empty ligand")
        center = ligand.coords.mean(axis=0)
        if self.ligand_channels:
            image = np.concatenate([voxelize(pocket, center, params=self.image), voxelize(ligand, center, params=self.image)])
        else:
            image = voxelize(AtomTable.concatenate([pocket, ligand], name=rid), center, params=self.image)
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), torch.tensor(affinity_of(record), dtype=torch.float32)


def split_paths(root: str | os.PathLike[str], split: str) -> dict[str, Path]:
    """The train/val/test LMDBs of an Atom3D LBA download.

    Accepts the download root (``split-by-sequence-identity-30/data/{train,val,test}``), a split
    folder (``.../data``) or a folder holding ``train``/``val``/``test`` directly.
    """
    root = Path(root)
    candidates = [root / f"split-by-{split}" / "data", root / split / "data", root / "data", root]
    for base in candidates:
        if all((base / s).exists() for s in SPLITS):
            return {s: base / s for s in SPLITS}
    raise FileNotFoundError(f"no train/val/test LMDBs for split {split!r} under {root}")


class LBADataModule(pl.LightningDataModule):
    """Loaders over the train/val/test LMDBs of one sequence-identity split."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        split: str = "sequence-identity-30",
        image: ImageParams = ImageParams(),
        ligand_channels: bool = True,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.paths = split_paths(root, split)
        self.image = image
        self.ligand_channels = ligand_channels
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.datasets: dict[str, LBADataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for name, path in self.paths.items():
            if name not in self.datasets:
                self.datasets[name] = LBADataset(path, self.image, self.ligand_channels)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(
            self.datasets[name], batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, drop_last=shuffle and len(self.datasets[name]) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
