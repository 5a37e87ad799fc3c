"""What the tasks share: items that are a pure function of (seed, split, epoch, index), a bounded
cache of loaded structures that loader workers start without, the sampler of an epoch's keys, the
loader side of the data configs and DataModules, and the encoder-plus-head classifier.

Nothing here imports Lightning: the DataModules mix :class:`EpochLoaders` into theirs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from atompaint.heads import HeadConfig, MLPHead
from structlayers.base import device_dtype
from structlayers.utils.sampling import EpochSampler as EpochSampler  # re-exported: the tasks' sampler

if TYPE_CHECKING:
    from atompaint.voxelize import ImageParams

#: The code of each split in the seed of its items.
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
C = TypeVar("C", bound="Classifier")


def item_rng(seed: int, split: str, length: int, key: int) -> np.random.Generator:
    """The generator of item ``key`` of a dataset of ``length`` items per epoch: a function of
    (seed, split, epoch = key // length, index = key % length) only, so an item does not depend on
    the number of loader workers, their order, or what was drawn before."""
    if key < 0:
        raise IndexError(f"negative key {key}")
    epoch, i = divmod(int(key), length)
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], epoch, i]))


class LRUCache(Generic[K, V]):
    """At most ``size`` values, the least recently used dropped first.  A pickled cache arrives
    empty: loader workers build their own values instead of receiving the parent's."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"cache size must be >= 1, not {size}")
        self.size = size
        self._values: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: K, build: Callable[[], V]) -> V:
        """The value of ``key``, made by ``build()`` when it is not cached."""
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        value = self._values[key] = build()
        while len(self._values) > self.size:
            self._values.popitem(last=False)
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {"size": self.size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["size"])


@dataclass(frozen=True)
class TaskDataConfig:
    """What the data configs of the tasks share: the seed their items derive from, the loader
    settings (checked when the config is made) and the encoder's input.  A task's data config
    derives from it before its example config (``class Config(TaskDataConfig, ExampleConfig)``), so
    these fields follow the example fields; a task with another default declares the field again
    (residue-env's ``batch_size``).  Expects ``image``.

    Attributes:
        seed: the seed the items derive from (with the split, epoch and index): their draws and the
            order of an epoch's keys (:class:`EpochSampler`).
        batch_size, num_workers: of the loaders.
    """

    seed: int = 0
    batch_size: int = 16
    num_workers: int = 0

    if TYPE_CHECKING:
        image: ImageParams

    def __post_init__(self) -> None:
        """The checks of the classes after this one (the example config), then the loader's."""
        post_init = getattr(super(), "__post_init__", None)
        if post_init is not None:
            post_init()
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError("batch_size must be >= 1 and num_workers >= 0")

    @property
    def input_channels(self) -> int:
        """Channels of one image: what the encoder takes."""
        return self.image.num_channels

    @property
    def input_size(self) -> int:
        """Voxels along each edge of one image."""
        return self.image.length_voxels


class EpochLoaders:
    """The loader side of a task's DataModule, mixed in before ``LightningDataModule``: the config,
    pinned memory, loaders over :class:`EpochSampler` keys and the training epoch as its state, so
    a resumed run continues with fresh examples.  Subclasses set ``_train_sampler`` in ``setup``."""

    def __init__(self, config: Any, *, pin_memory: bool | None = None) -> None:
        super().__init__()
        self.config = config
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._train_sampler: EpochSampler | None = None

    if TYPE_CHECKING:
        def setup(self, stage: str | None = None) -> None: ...

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def _loader(self, dataset: torch.utils.data.Dataset, sampler: EpochSampler) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.config.batch_size, sampler=sampler, num_workers=self.config.num_workers,
            pin_memory=self.pin_memory, persistent_workers=self.config.num_workers > 0, drop_last=False,
        )

    def _fixed_loader(self, dataset: torch.utils.data.Dataset) -> torch.utils.data.DataLoader:
        """A loader over epoch 0 of ``dataset`` on every pass (validation, test)."""
        return self._loader(dataset, EpochSampler(len(dataset), fixed=True))

    def state_dict(self) -> dict:
        """The training epoch counter, so a resumed run continues with fresh examples."""
        return {"train_epoch": self._train_sampler.epoch if self._train_sampler else 0}

    def load_state_dict(self, state_dict: dict) -> None:
        self.setup()
        assert self._train_sampler is not None
        self._train_sampler.epoch = int(state_dict.get("train_epoch", 0))


class Classifier(nn.Module):
    """An encoder and an MLP head from ``in_features`` encoder features to ``num_classes`` logits."""

    def __init__(self, encoder: nn.Module, in_features: int, num_classes: int, head: HeadConfig) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least two classes, got {num_classes}")
        self.encoder = encoder
        self.num_classes = num_classes
        self.head = MLPHead(in_features, num_classes, head)

    def replace_head(self: C, head: HeadConfig) -> C:
        """Swap in a new (e.g. compressed) head of the same shape, keeping the encoder."""
        self.head = MLPHead(self.head.in_features, self.num_classes, head).to(device_dtype(self)[0])
        return self
