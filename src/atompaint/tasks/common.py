"""What the tasks' datasets share: items that are a pure function of (seed, split, epoch, index),
and a bounded cache of loaded structures that loader workers start without."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np

#: The code of each split in the seed of its items.
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


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
