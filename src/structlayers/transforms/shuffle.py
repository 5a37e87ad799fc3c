"""Fixed permutations of the feature dimension placed between the factors of a stack.

``riffle`` interleaves the first and second halves (the ShuffleNet channel shuffle with two
groups); ``random`` is a fixed random permutation drawn once from a seed; ``none`` is the identity.
Every permutation is kept as an index buffer that is part of the ``state_dict``, so a random
shuffle survives save/load exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SHUFFLES = ("riffle", "random", "none")


def riffle_index(n: int) -> Tensor:
    """``out[2i] = x[i]``, ``out[2i+1] = x[h+i]`` with ``h = ceil(n/2)``: a perfect riffle."""
    h = (n + 1) // 2
    index = torch.empty(n, dtype=torch.long)
    index[0::2] = torch.arange(h)
    index[1::2] = torch.arange(h, n)
    return index


def make_permutation(kind: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """The index vector of a shuffle of ``n`` features (``y = x[..., index]``), on the CPU."""
    with torch.device("cpu"):
        return _make_permutation(kind, n, generator)


def _make_permutation(kind: str, n: int, generator: torch.Generator | None) -> Tensor:
    if kind == "riffle":
        return riffle_index(n)
    if kind == "random":
        return torch.randperm(n, generator=generator)
    if kind == "none":
        return torch.arange(n)
    raise ValueError(f"unknown shuffle {kind!r}; expected one of {SHUFFLES}")


class Permutation(nn.Module):
    """``y = x[..., index]`` on the last dimension, with ``index`` a persistent buffer."""

    def __init__(self, index: Tensor, kind: str = "custom") -> None:
        super().__init__()
        n = index.numel()
        cpu = index.cpu() if index.device.type != "meta" else None
        valid = cpu is None or torch.equal(torch.sort(cpu).values, torch.arange(n, device="cpu"))
        if not valid:
            raise ValueError(f"shuffle index of length {n} is not a permutation")
        self.kind = kind
        # A CPU index follows the default device (a model built under ``with torch.device(...)``).
        device = torch.get_default_device() if index.device.type == "cpu" else index.device
        self.register_buffer("index", index.clone().long().to(device))

    @property
    def is_identity(self) -> bool:
        return bool(torch.equal(self.index, torch.arange(self.index.numel(), device=self.index.device)))

    def forward(self, x: Tensor) -> Tensor:
        return x if self.kind == "none" else x.index_select(-1, self.index)

    def matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``P`` with ``x @ P == x[..., index]``."""
        n = self.index.numel()
        p = torch.zeros(n, n, dtype=dtype)
        p[self.index.cpu(), torch.arange(n)] = 1.0
        return p

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, n={self.index.numel()}"
