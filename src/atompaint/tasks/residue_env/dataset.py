"""The amino-acid environment dataset: one example per residue, the image of its surroundings
centred on it with its own atoms removed, labelled with its type (20 classes).

Which residues count, their labels, centres and own atoms follow :mod:`.residues`.  Items are a
pure function of ``(seed, split, epoch, index)`` (the generator is derived from those numbers with
:class:`numpy.random.SeedSequence`, as in the neighbor-location dataset): the orientation (uniform
over SO(3) with ``random_orientation``) and the translation noise of an item do not depend on the
number of workers or their order, and validation and test sets are fixed.  A training epoch walks a
fresh permutation of the residues; with ``shuffle_labels`` the training labels are permuted among
the training residues once (a control: a model trained so can only learn the class frequencies).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from atompaint.origins.index import LOAD_OPTIONS
from atompaint.structures import StructureError, load, structure_name
from atompaint.tasks.common import SPLIT_CODES, LRUCache, TaskDataConfig, item_rng
from atompaint.tasks.residue_env.residues import (
    AMINO_ACIDS,
    CENTER_MODES,
    NONSTANDARD_MODES,
    CenterMode,
    NonstandardMode,
    ResidueCounts,
    find_residues,
    residue_ordinals,
)
from atompaint.voxelize import ImageParams, PreparedAtoms, rasterize
from atompaint.voxelize.rotations import random_offset_in_ball, random_rotation


def _default_image() -> ImageParams:
    return ImageParams(length_voxels=9, resolution_A=1.6)


@dataclass(frozen=True)
class ResidueEnvConfig:
    """How examples are made.

    Attributes:
        image: image size, resolution, channels, atom radii (default 9^3 voxels of 1.6 A: a 14.4 A
            cube, the reach of the first shell of neighbours around a side chain).
        center: ``cb`` (CB, CA for glycine), ``ideal-cb`` (CB placed from the backbone for every
            residue) or ``ca`` (see :mod:`.residues`).
        nonstandard: ``map`` modified residues to their parent amino acid, or ``exclude`` them.
        random_orientation: rotate each image by a uniform random rotation (residue type is
            invariant, so this is augmentation and a test of the encoder's invariance).
        max_translation_A: noise on the centre (uniform in a ball).
        cache_structures: structures kept loaded per worker (LRU).
    """

    image: ImageParams = field(default_factory=_default_image)
    center: CenterMode = "cb"
    nonstandard: NonstandardMode = "map"
    random_orientation: bool = True
    max_translation_A: float = 0.0
    cache_structures: int = 64

    def __post_init__(self) -> None:
        if self.center not in CENTER_MODES:
            raise ValueError(f"unknown center {self.center!r}; choose from {', '.join(CENTER_MODES)}")
        if self.nonstandard not in NONSTANDARD_MODES:
            raise ValueError(f"unknown nonstandard {self.nonstandard!r}; choose from {', '.join(NONSTANDARD_MODES)}")
        if self.max_translation_A < 0:
            raise ValueError(f"max_translation_A must be >= 0, not {self.max_translation_A}")
        if self.cache_structures < 1:
            raise ValueError(f"cache_structures must be >= 1, not {self.cache_structures}")

    @property
    def num_classes(self) -> int:
        return len(AMINO_ACIDS)

    @property
    def reach_A(self) -> float:
        """Distance from the centre within which an atom can touch the image in some orientation."""
        return float(np.sqrt(3) * self.image.length_A / 2 + self.image.max_radius_A + self.max_translation_A)


@dataclass(frozen=True)
class ResidueEnvDataConfig(TaskDataConfig, ResidueEnvConfig):
    """The data of a training run: how examples are made (every field of :class:`ResidueEnvConfig`),
    where the structures are and how they are split, and how they are loaded
    (:class:`~atompaint.tasks.common.TaskDataConfig`).

    Attributes:
        structure_dir: structures to use (recursively).
        val_fraction, test_fraction: shares of the structures held out, split by a hash of their
            names (:func:`~atompaint.tasks.residue_env.datamodule.split_structures3`); never by residue.
        train_size: examples per training epoch (``None``: every training residue once).
        shuffle_labels: permute the training labels among the training residues (a control).
        batch_size: as in :class:`~atompaint.tasks.common.TaskDataConfig`, 32 by default here.
    """

    structure_dir: str = ""
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    train_size: int | None = None
    shuffle_labels: bool = False
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 <= self.val_fraction and 0 <= self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise ValueError(f"val_fraction and test_fraction must be >= 0 with a sum below 1, not "
                             f"{self.val_fraction} and {self.test_fraction}")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size must be >= 1 or null, not {self.train_size}")


@dataclass(frozen=True)
class ResidueIndex:
    """The examples of a set of structures, one row per residue.

    ``structure`` indexes ``paths``; ``residue`` is the residue's ordinal in its structure
    (:func:`~atompaint.tasks.residue_env.residues.residue_ordinals`); ``center`` ``(n, 3)`` float64.
    """

    paths: tuple[str, ...]
    structure: np.ndarray
    residue: np.ndarray
    label: np.ndarray
    center: np.ndarray
    names: tuple[str, ...]
    counts: ResidueCounts
    #: Files that could not be read, with the reason (never examples).
    failed: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.label)

    @property
    def structure_names(self) -> tuple[str, ...]:
        return tuple(structure_name(p) for p in self.paths)

    def select(self, structures: Sequence[int]) -> ResidueIndex:
        """The rows of the given structures (indices into ``paths``, which are kept)."""
        rows = np.isin(self.structure, np.asarray(structures, dtype=np.int64))
        return ResidueIndex(self.paths, self.structure[rows], self.residue[rows], self.label[rows],
                            self.center[rows], tuple(np.asarray(self.names, dtype=object)[rows]), self.counts,
                            self.failed)

    def class_counts(self) -> dict[str, int]:
        """Examples per amino acid (all 20, zeros included)."""
        counts = np.bincount(self.label, minlength=len(AMINO_ACIDS))
        return {name: int(c) for name, c in zip(AMINO_ACIDS, counts)}


def build_residue_index(paths: Sequence[str | os.PathLike[str]], config: ResidueEnvConfig) -> ResidueIndex:
    """Enumerate the examples of ``paths`` (read as the origin index reads them: no hydrogens, no
    waters, the first alternate location).  A file that cannot be read is recorded in ``failed``."""
    kept, parts, failed = [], [], []
    counts = ResidueCounts()
    for path in paths:
        try:
            atoms = load(path, **LOAD_OPTIONS)
        except (StructureError, OSError) as err:
            failed.append((str(path), str(err)))
            continue
        found = find_residues(atoms, center=config.center, nonstandard=config.nonstandard, reach_A=config.reach_A)
        counts = counts + found.counts
        parts.append((len(kept), found))
        kept.append(str(path))
    structure = np.concatenate([np.full(len(f.residue), i, dtype=np.int64) for i, f in parts] or [np.zeros(0, int)])
    return ResidueIndex(
        paths=tuple(kept),
        structure=structure,
        residue=np.concatenate([f.residue for _, f in parts] or [np.zeros(0, int)]),
        label=np.concatenate([f.label for _, f in parts] or [np.zeros(0, int)]),
        center=np.concatenate([f.center for _, f in parts] or [np.zeros((0, 3))]),
        names=tuple(n for _, f in parts for n in f.names),
        counts=counts,
        failed=tuple(failed),
    )


class ResidueEnvItem(NamedTuple):
    """One item (or, collated, one batch): the ``(C, L, L, L)`` image and the int64 class."""

    image: torch.Tensor
    label: torch.Tensor


@dataclass
class _Loaded:
    """A structure as a dataset worker keeps it: ready to voxelize, with each imaged atom's residue."""

    prepared: PreparedAtoms
    residue: np.ndarray


class ResidueEnvDataset(torch.utils.data.Dataset):
    """Map-style dataset over the residues of a :class:`ResidueIndex`.

    ``len(dataset)`` is the number of items per epoch (``length``, default: one per residue).  Keys
    ``k >= len`` belong to epoch ``k // len`` (see :class:`~atompaint.tasks.common.EpochSampler`);
    with ``permute`` the keys walk a new permutation of the residues every ``len(index)`` items, else
    item ``i`` of every epoch is residue ``i mod len(index)``.
    """

    def __init__(
        self,
        index: ResidueIndex,
        config: ResidueEnvConfig = ResidueEnvConfig(),
        *,
        length: int | None = None,
        seed: int = 0,
        split: str = "train",
        permute: bool = False,
        shuffle_labels: bool = False,
    ):
        if len(index) == 0:
            raise ValueError(f"no residues to make {split} examples of")
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, not {split!r}")
        self.index = index
        self.config = config
        self.length = len(index) if length is None else int(length)
        if self.length < 1:
            raise ValueError(f"length must be >= 1, not {self.length}")
        self.seed = int(seed)
        self.split = split
        self.permute = permute
        labels = index.label
        if shuffle_labels:
            seq = np.random.SeedSequence([self.seed, SPLIT_CODES[split], 1])
            labels = np.random.default_rng(seq).permutation(labels)
        #: The labels the items carry (permuted with ``shuffle_labels``).
        self.labels = labels
        self._cache: LRUCache[int, _Loaded] = LRUCache(config.cache_structures)
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def rng(self, key: int) -> np.random.Generator:
        """The generator of item ``key``: a function of (seed, split, epoch, index) only."""
        return item_rng(self.seed, self.split, self.length, key)

    def row(self, key: int) -> int:
        """The row of the residue index that item ``key`` shows."""
        n = len(self.index)
        if not self.permute:
            return int(key) % self.length % n
        cycle, j = divmod(int(key), n)
        if self._order is None or self._order[0] != cycle:
            seq = np.random.SeedSequence([self.seed, SPLIT_CODES[self.split], 2, cycle])
            self._order = (cycle, np.random.default_rng(seq).permutation(n))
        return int(self._order[1][j])

    def pose(self, key: int) -> tuple[int, np.ndarray, np.ndarray]:
        """``(row, center, rotation)`` of item ``key``, without voxelizing it."""
        rng = self.rng(key)
        row = self.row(key)
        rotation = random_rotation(rng) if self.config.random_orientation else np.eye(3)
        center = self.index.center[row] + random_offset_in_ball(rng, self.config.max_translation_A)
        return row, center, rotation

    def _loaded(self, structure: int) -> _Loaded:
        def build() -> _Loaded:
            atoms = load(Path(self.index.paths[structure]), **LOAD_OPTIONS)
            prepared = PreparedAtoms(atoms, self.config.image)
            return _Loaded(prepared, residue_ordinals(atoms)[prepared.atom_index])

        return self._cache.get(structure, build)

    def environment_rows(self, key: int) -> tuple[PreparedAtoms, np.ndarray, np.ndarray, np.ndarray]:
        """``(prepared, rows, center, rotation)``: the imaged atoms of item ``key``'s structure that
        can touch its image, its own residue's atoms removed."""
        row, center, rotation = self.pose(key)
        loaded = self._loaded(int(self.index.structure[row]))
        rows = loaded.prepared.candidates(center)
        rows = rows[loaded.residue[rows] != self.index.residue[row]]
        return loaded.prepared, rows, center, rotation

    def image(self, key: int) -> np.ndarray:
        """The ``(C, L, L, L)`` image of item ``key``."""
        prepared, rows, center, rotation = self.environment_rows(key)
        rel = (prepared.coords[rows] - center) @ rotation.T
        return rasterize(rel, prepared.radius[rows], prepared.occupancy[rows], prepared.channel_mask[rows],
                         self.config.image)

    def __getitem__(self, key: int) -> ResidueEnvItem:
        label = self.labels[self.row(key)]
        return ResidueEnvItem(torch.from_numpy(self.image(key)), torch.tensor(label, dtype=torch.int64))
