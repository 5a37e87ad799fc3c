"""The sampler of an epoch: what a training epoch visits is a function of the epoch alone, so a run
resumed at epoch ``e`` sees exactly what an uninterrupted run would have seen."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """The ``length`` indices of one epoch, in one of the two ways an epoch differs from the last:

    - ``seed=None``: keys ``epoch * length + i`` in order, for datasets that make a fresh example of
      every key (key ``k`` is item ``k % length`` drawn for epoch ``k // length``);
    - ``seed`` given: ``range(length)`` in a random order that depends only on ``(seed, epoch)``, for
      datasets of fixed items.

    The epoch is what :meth:`set_epoch` set (Lightning calls it at the start of every training
    epoch); each pass then advances it by one, so a plain loop sees a new epoch per pass too.
    ``fixed=True`` makes every pass epoch 0 (validation).  Under ``torch.distributed`` each rank
    takes every ``world_size``-th index, so ranks see disjoint items.
    """

    def __init__(self, length: int, seed: int | None = None, *, fixed: bool = False, start_epoch: int = 0) -> None:
        self.length = int(length)
        self.seed = seed
        self.fixed = fixed
        self.epoch = int(start_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        rank, world = _rank_and_world()
        return len(range(rank, self.length, world))

    def __iter__(self) -> Iterator[int]:
        epoch = 0 if self.fixed else self.epoch
        if not self.fixed:
            self.epoch += 1
        rank, world = _rank_and_world()
        if self.seed is None:
            return iter(range(epoch * self.length + rank, (epoch + 1) * self.length, world))
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return iter(torch.randperm(self.length, generator=g)[rank::world].tolist())


def _rank_and_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
