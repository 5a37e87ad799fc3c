"""The LBA (ligand binding affinity) task: Atom3D records -> voxel images and ``neglog_aff`` labels.

Each image is centred on the ligand's centroid.  With ``ligand_channels`` the pocket and the ligand
get separate element channels (``2 C`` channels), so the model can tell which atoms belong to the
small molecule; otherwise they share the ``C`` channels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from atompaint.structures import AtomTable
from atompaint.tasks.common import TaskDataConfig
from atompaint.tasks.lba.lmdb_io import AtomLMDB
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


def image_channels(image: ImageParams, ligand_channels: bool) -> int:
    """Channels of an LBA image: the element channels, twice with separate ligand channels."""
    return image.num_channels * (2 if ligand_channels else 1)


@dataclass(frozen=True)
class LBADataConfig(TaskDataConfig):
    """An Atom3D LBA data set and how it is imaged, and how it is loaded
    (:class:`~atompaint.tasks.common.TaskDataConfig`: ``seed`` orders the training items, a
    function of the seed and the epoch alone).

    Attributes:
        root: the download (``split-by-<split>/data/{train,val,test}`` LMDBs) or a split folder.
        split: which split of the download (``sequence-identity-30`` or ``-60``).
        image: the voxel images, centred on the ligand.
        ligand_channels: separate element channels for the ligand (``2 C`` channels); off when
            fine-tuning an encoder pretrained on ``C``-channel images.
    """

    root: str = ""
    split: str = "sequence-identity-30"
    image: ImageParams = field(default_factory=ImageParams)
    ligand_channels: bool = True

    @property
    def input_channels(self) -> int:
        return image_channels(self.image, self.ligand_channels)


class LBADataset(Dataset):
    """``(image (C', L, L, L) float32, neglog_aff float32)`` for every record of an Atom3D LBA LMDB."""

    def __init__(self, lmdb_path: str | os.PathLike[str], image: ImageParams, *, ligand_channels: bool) -> None:
        self.records = AtomLMDB(lmdb_path)
        self.image = image
        self.ligand_channels = ligand_channels

    @property
    def num_channels(self) -> int:
        return image_channels(self.image, self.ligand_channels)

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
            image = np.concatenate([voxelize(pocket, center, self.image), voxelize(ligand, center, self.image)])
        else:
            image = voxelize(AtomTable.concatenate([pocket, ligand], name=rid), center, self.image)
        label = torch.tensor(affinity_of(record), dtype=torch.float32)
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), label


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
