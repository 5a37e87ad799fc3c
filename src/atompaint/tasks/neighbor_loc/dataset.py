"""The neighbour-location dataset: pairs of voxelized views and the direction from one to the other.

Each item is a :class:`NeighborLocItem` ``(view_a, view_b, label, b_draws, b_fallback, mask)``: two
float32 ``(C, L, L, L)`` images, an int64 direction index, how the example was drawn (see below) and
the bool ``(K,)`` mask of the directions the label could take (all true for ``dense-b``).  Items are a
pure function of ``(seed, split, epoch, index)`` -- the random generator is derived from those numbers
with :class:`numpy.random.SeedSequence` -- so results do not depend on the number of workers, their
order, or what was sampled before, and validation sets are fixed.

View A is centred on an origin of the index, which passed the index's density criterion
(:class:`~atompaint.origins.OriginParams`).  How the direction is chosen is the *construction*
(:mod:`~atompaint.tasks.neighbor_loc.constructions`).  In ``dense-b``, the default and the original
task, view B is held to the same criterion at its own centre:
the direction, orientation and noise are redrawn until B's centre is dense, at most ``b_max_draws``
times; if none is, the densest draw is kept and the item is marked a fallback.  Without this check a
large share of B views show solvent, and the task degenerates into telling which side of A is empty.
With it, the label is no longer independent of view A: B lies where the structure continues, which
A shows, and on small structures few directions qualify.  The other constructions redraw the origin
and orientation (at most ``b_max_draws`` times) until the draw qualifies, and draw the label uniformly
over the qualifying directions.  :mod:`~atompaint.tasks.neighbor_loc.evaluate` measures how much a
model relies on either view alone (views emptied or swapped, zero-parameter density rules).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from atompaint.origins import AtomDensity, OriginIndex, OriginParams, OriginSampler
from atompaint.structures import load
from atompaint.tasks.common import SPLIT_CODES, LRUCache, TaskDataConfig, item_rng
from atompaint.tasks.common import EpochSampler as EpochSampler  # re-exported: its home until tasks.common
from atompaint.tasks.neighbor_loc.constructions import CONSTRUCTIONS, ConstructionError, DrawCheck, check_draw
from atompaint.tasks.neighbor_loc.geometry import DIRECTION_SETS, ViewPair, make_view_pair, neighbor_directions
from atompaint.voxelize import ImageParams, PreparedAtoms, random_rotation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NeighborLocConfig:
    """How examples are made.

    Attributes:
        image: image size, resolution, channels, atom radii.
        directions: neighbour direction set (see :func:`neighbor_directions`); its size is the number
            of classes.
        padding_A: gap between the two views: their centres are ``image.length_A + padding_A`` apart.
            With face directions, no rotational noise and ``padding_A >= max_translation_A`` the
            views never share a voxel; without padding about half the noisy pairs overlap, and a
            model can match the shared voxels instead of locating B.  The default, 2 A, is one of
            the paddings the upstream experiments compared (1, 2 and 4 A: 1 and 2 A trained alike,
            4 A about 3% lower in accuracy).  Negative values (down to ``-length_A``) make the views
            overlap on purpose.
        max_translation_A: translational noise on view B's centre (uniform in a ball).
        max_rotation_deg: rotational noise on view B (random axis, uniform angle).
        random_orientation: rotate both views by one uniform random rotation (the task is then
            posed in the image frame, independent of the structure's frame).
        weighted: draw origins in proportion to their weighted atom count instead of uniformly.
        construction: how the direction is chosen (:data:`CONSTRUCTIONS`, see
            :mod:`~atompaint.tasks.neighbor_loc.constructions`): ``dense-b`` (the original task),
            ``balanced``, ``balanced-both`` or ``all-dense``.
        min_dense: the fewest dense directions a ``balanced``/``balanced-both`` draw must have (>= 2).
        b_density_check: ``dense-b`` only: hold view B to the density criterion of the origins (see
            the module docstring); off reproduces the unchecked task, for comparisons.
        b_max_draws: how many times an example is drawn at most: view B (``dense-b``; then the
            densest draw is kept as a fallback) or the origin and orientation (the other
            constructions; ``balanced`` then keeps the draw with the most dense directions as a
            counted fallback, ``balanced-both`` and ``all-dense`` raise :class:`ConstructionError`
            with the numbers).  >= 1.
        cache_structures: structures kept loaded per worker (LRU); bounds worker memory.
    """

    image: ImageParams = field(default_factory=ImageParams)
    directions: str = "faces"
    padding_A: float = 2.0
    max_translation_A: float = 2.0
    max_rotation_deg: float = 20.0
    random_orientation: bool = True
    weighted: bool = False
    construction: str = "dense-b"
    min_dense: int = 2
    b_density_check: bool = True
    b_max_draws: int = 100
    cache_structures: int = 32

    def __post_init__(self) -> None:
        if self.directions not in DIRECTION_SETS:
            raise ValueError(f"unknown directions {self.directions!r}; choose from {DIRECTION_SETS}")
        if not self.padding_A > -self.image.length_A:
            raise ValueError(
                f"padding_A must be greater than -length_A = {-self.image.length_A}, not {self.padding_A!r}"
            )
        if self.construction not in CONSTRUCTIONS:
            raise ValueError(f"unknown construction {self.construction!r}; choose from {CONSTRUCTIONS}")
        if self.min_dense < 2:
            raise ValueError(f"min_dense must be >= 2 (one allowed direction gives the label away), "
                             f"not {self.min_dense!r}")
        if self.construction != "dense-b" and not self.b_density_check:
            raise ValueError(f"b_density_check: false applies to the dense-b construction only, "
                             f"not to {self.construction!r}")
        if self.b_max_draws < 1:
            raise ValueError(f"b_max_draws must be >= 1, not {self.b_max_draws!r}")
        if self.max_translation_A < 0 or self.max_rotation_deg < 0:
            raise ValueError("noise amplitudes must be >= 0")
        if self.max_rotation_deg > 180:
            raise ValueError(f"max_rotation_deg must be at most 180, not {self.max_rotation_deg}")
        if self.cache_structures < 1:
            raise ValueError(f"cache_structures must be >= 1, not {self.cache_structures}")

    @property
    def num_classes(self) -> int:
        return len(neighbor_directions(self.directions))

    @property
    def neighbor_distance_A(self) -> float:
        """Distance between the centres of the two views (before noise)."""
        return self.image.length_A + float(self.padding_A)


@dataclass(frozen=True)
class NeighborLocDataConfig(TaskDataConfig, NeighborLocConfig):
    """The data of a training run: how examples are made (every field of :class:`NeighborLocConfig`),
    where the structures are, how many examples an epoch has, and how they are loaded
    (:class:`~atompaint.tasks.common.TaskDataConfig`).

    Attributes:
        structure_dir: structures to index (recursively); the origin index is built, or resumed, at
            ``index_path`` or in a per-user cache (:func:`default_index_path`).
        index_path: an origin index to use (with ``structure_dir``: where to keep it).
        origins: the density criterion: which atoms are origins (view A centres) when the index is
            built, and what view B is held to.  A given ``index_path`` must have been built with it.
        train_size, val_size: examples per training epoch (fresh every epoch) and in the fixed
            validation set.
        val_fraction: share of the structures (split by a hash of their names) held out for validation.
    """

    structure_dir: str = ""
    index_path: str | None = None
    origins: OriginParams = field(default_factory=OriginParams)
    train_size: int = 10_000
    val_size: int = 1_000
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_size < 1 or self.val_size < 1:
            raise ValueError(f"train_size and val_size must be >= 1, not {self.train_size} and {self.val_size}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), not {self.val_fraction}")


@dataclass(frozen=True)
class Example:
    """The geometry of one item, with where it came from and how it was drawn.

    ``b_draws``: draws made (of view B for ``dense-b``, of the origin and orientation otherwise; 1 when
    the first passed); ``b_fallback``: no draw passed and the best one was kept; ``b_count``: the
    weighted atom count at B's centre (``dense-b`` with the check on; else ``nan``); ``mask``: bool
    ``(K,)``, the directions the label was drawn from (``None``: all).
    """

    views: ViewPair
    structure_id: int
    origin_id: int
    b_draws: int = 1
    b_fallback: bool = False
    b_count: float = float("nan")
    mask: np.ndarray | None = None


class NeighborLocItem(NamedTuple):
    """One item (or, collated, one batch): the two views, the label, how the example was drawn and
    the mask of the directions the label could take (the model's logits outside it are masked)."""

    view_a: torch.Tensor
    view_b: torch.Tensor
    label: torch.Tensor
    b_draws: torch.Tensor
    b_fallback: torch.Tensor
    mask: torch.Tensor


@dataclass
class _Loaded:
    """A structure as a dataset worker keeps it: ready to voxelize and to test densities."""

    prepared: PreparedAtoms
    density: AtomDensity


class NeighborLocDataset(torch.utils.data.Dataset):
    """Map-style dataset over the origins of some structures of an :class:`OriginIndex`.

    ``len(dataset)`` is the number of items per epoch.  Keys ``k >= len`` are allowed: item ``k`` belongs
    to epoch ``k // len`` (see :class:`EpochSampler`), so training sees fresh examples every epoch
    while any single key always gives the same example.
    """

    def __init__(
        self,
        index: OriginIndex | str | os.PathLike[str],
        config: NeighborLocConfig = NeighborLocConfig(),
        *,
        length: int,
        structure_ids: Sequence[int] | None = None,
        seed: int = 0,
        split: str = "train",
    ):
        if length < 1:
            raise ValueError(f"length must be >= 1, not {length}")
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, not {split!r}")
        self.index = index if isinstance(index, OriginIndex) else OriginIndex(index)
        self.config = config
        self.length = int(length)
        self.seed = int(seed)
        self.split = split
        structures = self.index.structures()
        self.sampler = OriginSampler(self.index, structure_ids, weighted=config.weighted, structures=structures)
        self.directions = neighbor_directions(config.directions)
        # Only the structures this split draws from: the map is pickled to every loader worker.
        drawn = set(self.sampler.structure_ids.tolist())
        self._paths = {s.id: s.path for s in structures if s.id in drawn}
        self._cache: LRUCache[int, _Loaded] = LRUCache(config.cache_structures)

    def __len__(self) -> int:
        return self.length

    def rng(self, key: int) -> np.random.Generator:
        """The generator of item ``key``: a function of (seed, split, epoch, index) only."""
        return item_rng(self.seed, self.split, self.length, key)

    @property
    def criterion(self) -> OriginParams:
        """The density criterion: the one the index chose view A's origins with."""
        return self.index.params

    def example(self, key: int) -> Example:
        """The geometry of item ``key`` without voxelizing it."""
        rng = self.rng(key)
        if self.config.construction != "dense-b":
            return self._constructed_example(rng, key)
        config = self.config
        origin_id, structure_id, origin = self.sampler.sample(rng)

        def draw() -> ViewPair:
            return make_view_pair(
                rng, origin, self.directions, config.neighbor_distance_A, config.max_translation_A,
                config.max_rotation_deg, config.random_orientation,
            )

        if not config.b_density_check:
            return Example(draw(), structure_id, origin_id)
        density = self._loaded(structure_id).density
        best: tuple[float, ViewPair] | None = None
        for n in range(1, config.b_max_draws + 1):
            views = draw()
            count = density.count(views.center_b)
            if density.is_dense(count):
                return Example(views, structure_id, origin_id, b_draws=n, b_count=count)
            if best is None or count > best[0]:
                best = (count, views)
        assert best is not None
        log.debug("view B fallback: structure %d, origin %d, densest of %d draws has %.1f atoms (< %g)",
                  structure_id, origin_id, config.b_max_draws, best[0], self.criterion.min_atoms)
        return Example(best[1], structure_id, origin_id, b_draws=config.b_max_draws, b_fallback=True,
                       b_count=best[0])

    def _constructed_example(self, rng: np.random.Generator, key: int) -> Example:
        """Redraw origin and orientation until the draw satisfies the construction, then draw the
        label uniformly over its allowed directions."""
        config = self.config
        best: tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray] | None = None
        most_dense = 0
        for n in range(1, config.b_max_draws + 1):
            origin_id, structure_id, origin, rotation, check = self._draw(rng)
            n_dense = int(check.dense.sum())
            most_dense = max(most_dense, n_dense)
            if check.accepted:
                return self._place(rng, origin_id, structure_id, origin, rotation, check.allowed, n, False)
            if best is None or n_dense > best[0]:
                best = (n_dense, origin_id, structure_id, origin, rotation, check.dense)
        assert best is not None
        if config.construction != "balanced":
            need = {"all-dense": f"all {len(self.directions)} neighbour centres and those of every view B dense",
                    "balanced-both": f">= {config.min_dense} dense neighbour centres, and from every candidate B "
                                     "the directions opposite them dense"}[config.construction]
            raise ConstructionError(
                f"{config.construction}: none of {config.b_max_draws} (origin, orientation) draws of item {key} "
                f"({self.split}) had {need}; the most dense directions seen was {most_dense} of "
                f"{len(self.directions)}.  Single chains rarely allow it: index with crystal symmetry mates or "
                "biological assemblies (data.origins.context), raise b_max_draws, or choose another construction"
            )
        n_dense, origin_id, structure_id, origin, rotation, dense = best
        allowed = dense if n_dense else np.ones(len(dense), dtype=bool)
        log.debug("%s fallback: item %d, best of %d draws has %d dense directions",
                  config.construction, key, config.b_max_draws, n_dense)
        return self._place(rng, origin_id, structure_id, origin, rotation, allowed, config.b_max_draws, True)

    def _draw(self, rng: np.random.Generator) -> tuple[int, int, np.ndarray, np.ndarray, DrawCheck]:
        """One (origin, orientation) draw and what the construction makes of it."""
        origin_id, structure_id, origin = self.sampler.sample(rng)
        rotation = random_rotation(rng) if self.config.random_orientation else np.eye(3)
        check = check_draw(self.config.construction, self.density(structure_id), origin, rotation, self.directions,
                           self.config.neighbor_distance_A, self.config.min_dense)
        return origin_id, structure_id, origin, rotation, check

    def check_construction(self, draws: int = 500, failure_rate: float = 1e-6) -> float:
        """Probe ``draws`` (origin, orientation) draws and return the share the construction accepts.

        Raises :class:`ConstructionError` when none is accepted, and ``ValueError`` when ``b_max_draws``
        is too small for the share: an item fails (``balanced-both``, ``all-dense``) or falls back
        (``balanced``) with probability ``(1 - share) ** b_max_draws``, which must stay below
        ``failure_rate``.  Lets a training run fail at setup rather than mid-epoch."""
        if self.config.construction == "dense-b":
            return 1.0
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, SPLIT_CODES[self.split], 2**31]))
        checks = [self._draw(rng)[4] for _ in range(draws)]
        accepted = sum(c.accepted for c in checks)
        most = max(int(c.dense.sum()) for c in checks)
        k = len(self.directions)
        if accepted == 0:
            raise ConstructionError(
                f"{self.config.construction}: none of {draws} (origin, orientation) draws of the {self.split} "
                f"structures satisfies the construction; the most dense directions seen was {most} of {k}.  "
                "Single chains rarely allow it: index with crystal symmetry mates or biological assemblies "
                "(data.origins.context), or choose another construction"
            )
        share = accepted / draws
        needed = int(np.ceil(np.log(failure_rate) / np.log1p(-share))) if share < 1 else 1
        if self.config.b_max_draws < needed:
            raise ValueError(
                f"{self.config.construction} accepts {accepted} of {draws} draws ({share:.1%}) of the {self.split} "
                f"structures: with b_max_draws={self.config.b_max_draws} an item would fail with probability "
                f"{(1 - share) ** self.config.b_max_draws:.1e}; set data.b_max_draws >= {needed}"
            )
        return share

    def _place(
        self, rng: np.random.Generator, origin_id: int, structure_id: int, origin: np.ndarray, rotation: np.ndarray,
        allowed: np.ndarray, draws: int, fallback: bool,
    ) -> Example:
        config = self.config
        label = int(rng.choice(np.flatnonzero(allowed)))
        views = make_view_pair(
            rng, origin, self.directions, config.neighbor_distance_A, config.max_translation_A,
            config.max_rotation_deg, config.random_orientation, label=label, rotation=rotation,
        )
        return Example(views, structure_id, origin_id, b_draws=draws, b_fallback=fallback, mask=allowed.copy())

    def _loaded(self, structure_id: int) -> _Loaded:
        def build() -> _Loaded:
            atoms = load(self._paths[structure_id], **self.index.load_options, **self.criterion.load_context)
            return _Loaded(PreparedAtoms(atoms, self.config.image), AtomDensity(atoms, self.criterion))

        return self._cache.get(structure_id, build)

    def structure(self, structure_id: int) -> PreparedAtoms:
        """The voxelization-ready atoms of a structure, from a bounded per-process LRU cache."""
        return self._loaded(structure_id).prepared

    def density(self, structure_id: int) -> AtomDensity:
        """The density criterion on a structure's atoms (same cache as :meth:`structure`)."""
        return self._loaded(structure_id).density

    def __getitem__(self, key: int) -> NeighborLocItem:
        ex = self.example(key)
        v = ex.views
        images = self.structure(ex.structure_id).images(
            np.stack([v.center_a, v.center_b]), np.stack([v.rotation_a, v.rotation_b])
        )
        mask = torch.ones(len(self.directions), dtype=torch.bool) if ex.mask is None else torch.from_numpy(ex.mask)
        return NeighborLocItem(
            torch.from_numpy(images[0]), torch.from_numpy(images[1]), torch.tensor(v.label, dtype=torch.int64),
            torch.tensor(ex.b_draws, dtype=torch.int64), torch.tensor(ex.b_fallback), mask,
        )
