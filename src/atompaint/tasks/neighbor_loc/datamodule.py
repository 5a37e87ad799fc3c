"""Lightning DataModule for the neighbour-location task.

Batches are :class:`~atompaint.tasks.neighbor_loc.dataset.NeighborLocItem` tuples ``(view_a, view_b,
label, b_draws, b_fallback, mask)``: ``view_a`` and ``view_b`` float32 ``(B, C, L, L, L)`` (channels per
:attr:`ImageParams.channels`, ``L = length_voxels``), ``label`` int64 ``(B,)`` in
``[0, config.num_classes)``, how each example was drawn (int64 and bool ``(B,)``) and the bool ``(B, K)``
mask of the directions each label could take.  Everything the
module does is set by one :class:`~atompaint.tasks.neighbor_loc.dataset.NeighborLocDataConfig`
(the ``data:`` section of a training config).  Structures are split into train/validation by a hash of their name (no
structure contributes to both); validation examples are fixed across epochs, training
examples are fresh each epoch.  Loaders pin memory when CUDA is available.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule

from atompaint.origins import OriginIndex, OriginParams, build_index, find_structures
from atompaint.tasks.common import EpochLoaders, EpochSampler
from atompaint.tasks.neighbor_loc.dataset import NeighborLocDataConfig, NeighborLocDataset


def split_structures(names: dict[int, str], val_fraction: float) -> tuple[list[int], list[int]]:
    """``(train_ids, val_ids)``: structures ordered by a hash of their name, the first
    ``round(val_fraction * n)`` go to validation -- a split by structure that depends only on the names
    (not on file order) and changes little when structures are added.  Both splits get at least one
    structure when there are two or more and ``val_fraction > 0``."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")

    def unit(name: str) -> float:
        return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16) / 16**12

    ids = sorted(names, key=lambda i: unit(names[i]))
    n_val = round(val_fraction * len(ids))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    return sorted(ids[n_val:]), sorted(ids[:n_val])


def default_index_path(structure_dir: str | os.PathLike[str], params: OriginParams) -> Path:
    """Where :class:`NeighborLocDataModule` keeps an index it builds: a per-user cache
    keyed by the directory and origin parameters (data directories are often read-only)."""
    key = json.dumps([str(Path(structure_dir).resolve()), asdict(params)], sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("ATOMPAINT_CACHE", Path.home() / ".cache" / "atompaint"))
    return cache / f"origins-{Path(structure_dir).resolve().name}-{digest}.db"


class NeighborLocDataModule(EpochLoaders, LightningDataModule):
    """Train/validation loaders of :class:`NeighborLocDataset` over an origin index."""

    config: NeighborLocDataConfig

    def __init__(
        self, config: NeighborLocDataConfig = NeighborLocDataConfig(), *, pin_memory: bool | None = None,
        progress: bool = False,
    ):
        """``config.structure_dir`` set: build (or resume, or reuse) the origin index of that folder at
        ``config.index_path`` or in the cache; else ``config.index_path`` must be a built index."""
        super().__init__(config, pin_memory=pin_memory)
        if config.structure_dir:
            path = Path(config.index_path or default_index_path(config.structure_dir, config.origins))
            build_index(find_structures(config.structure_dir), path, config.origins, progress=progress)
        elif config.index_path:
            path = Path(config.index_path)
        else:
            raise ValueError("data.structure_dir (structures to index) or data.index_path (a built index) is required")
        if not path.is_file():
            raise FileNotFoundError(f"origin index not found: {path} (build it with `atompaint index`)")
        index = OriginIndex(path)
        built_with = index.params
        index.close()
        if built_with != config.origins:
            raise ValueError(
                f"{path} was built with the origin criterion {built_with}, but data.origins is {config.origins}; "
                "set data.origins to match, or give data.structure_dir to build an index for it"
            )
        self.index_path = path
        self.train_dataset: NeighborLocDataset | None = None
        self.val_dataset: NeighborLocDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        index = OriginIndex(self.index_path)
        infos = [s for s in index.structures() if s.n_origins > 0]
        if not infos:
            failures = index.failures()
            reason = f"; {len(failures)} file(s) could not be read, e.g. {failures[0][1]}" if failures else ""
            raise ValueError(f"{self.index_path}: no structure has any origins{reason}")
        config = self.config
        train_ids, val_ids = split_structures({s.id: s.name for s in infos}, config.val_fraction)
        self.train_dataset = NeighborLocDataset(
            index, config, length=config.train_size, structure_ids=train_ids, seed=config.seed, split="train"
        )
        if val_ids:
            self.val_dataset = NeighborLocDataset(
                index, config, length=config.val_size, structure_ids=val_ids, seed=config.seed, split="val"
            )
        self._train_sampler = EpochSampler(config.train_size)
        for dataset in (self.train_dataset, self.val_dataset):  # a construction that cannot work fails here
            if dataset is not None:
                dataset.check_construction()
        index.close()  # each worker reopens its own read-only connection

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        self.setup()
        assert self.train_dataset is not None and self._train_sampler is not None
        return self._loader(self.train_dataset, self._train_sampler)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        self.setup()
        if self.val_dataset is None:
            raise ValueError("no validation structures (val_fraction=0 or a single structure)")
        return self._fixed_loader(self.val_dataset)  # config.val_size items
