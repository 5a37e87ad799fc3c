"""Targets of the approximation experiment: dense ``(out, in)`` matrices a layer is fitted to.

Generated kinds (size ``n``, a new draw per seed): ``gaussian`` (N(0, 1/n) entries, no structure),
``linear`` (an ``nn.Linear``'s default initial weight, U(-1/sqrt(n), 1/sqrt(n))), ``toeplitz``
(N(0, 1/n) diagonals), ``lowrank_diag`` (a N(0, 1) diagonal plus a rank-``n/8`` part of equal
Frobenius norm), and ``dct`` (the orthonormal DCT-II, the same for every seed).  Any other
target is a file: ``path.pt`` holding a 2-D tensor or a dict with a ``"weight"`` entry, or
``path.pt:name`` for entry ``name`` of a dict (e.g. weights saved from trained models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from structlayers.lightning.checkpoints import read_torch_file
from structlayers.transforms.dct import dct_matrix

GENERATED = ("gaussian", "linear", "toeplitz", "dct", "lowrank_diag")


@dataclass(frozen=True)
class Target:
    """A matrix to fit: ``weight (out, in)`` in float64, with what it is."""

    kind: str
    weight: Tensor
    description: str

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.weight.shape[0]), int(self.weight.shape[1])


def gaussian_target(n_in: int, n_out: int | None = None, seed: int = 0) -> Tensor:
    """A random ``(n_out, n_in)`` matrix with N(0, 1/n_in) entries (unit-variance outputs)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_out or n_in, n_in, generator=g, dtype=torch.float64) / math.sqrt(n_in)


def _generated(kind: str, n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return gaussian_target(n, seed=seed)
    if kind == "linear":
        bound = 1 / math.sqrt(n)
        return torch.empty(n, n, dtype=torch.float64).uniform_(-bound, bound, generator=g)
    if kind == "toeplitz":
        t = torch.randn(2 * n - 1, generator=g, dtype=torch.float64) / math.sqrt(n)
        i = torch.arange(n)
        return t[i[:, None] - i[None, :] + n - 1]
    if kind == "dct":
        return dct_matrix(n).T.contiguous()  # y = x W^T = dct(x)
    if kind == "lowrank_diag":
        rank = max(1, n // 8)
        d = torch.randn(n, generator=g, dtype=torch.float64)
        low = torch.randn(n, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, n, generator=g,
                                                                                   dtype=torch.float64)
        low *= torch.linalg.norm(d) / torch.linalg.norm(low)
        return (torch.diag(d) + low) / math.sqrt(2 * n)
    raise ValueError(f"unknown target kind {kind!r}; expected one of {GENERATED} or a .pt file")


def load_target_file(spec: str) -> Tensor:
    """The matrix in ``path.pt`` (a tensor, or a dict's ``"weight"``) or ``path.pt:name``."""
    path, _, name = spec.partition(".pt:")
    path = path if path.endswith(".pt") or not name else path + ".pt"
    if not Path(path).is_file():
        raise FileNotFoundError(f"target file {path!r} not found (targets: {', '.join(GENERATED)} or a .pt file)")
    data = read_torch_file(path, "target file")
    if isinstance(data, dict):
        key = name or "weight"
        if key not in data:
            raise ValueError(f"target file {path!r} has no entry {key!r}; entries: {', '.join(map(str, data))}")
        data = data[key]
    elif name:
        raise ValueError(f"target file {path!r} holds one tensor, not a dict with entry {name!r}")
    if not isinstance(data, Tensor) or data.dim() != 2 or data.is_complex():
        raise ValueError(f"target {spec!r} is not a real 2-D tensor")
    if min(data.shape) == 0:
        raise ValueError(f"target {spec!r} is empty (shape {tuple(data.shape)})")
    finite = torch.isfinite(data)
    if not finite.all():
        raise ValueError(f"target {spec!r} has {int((~finite).sum())} NaN or infinite entries of {data.numel()}")
    if not data.any():
        raise ValueError(f"target {spec!r} is all zero: the relative error of a fit to it is undefined")
    return data.detach().double()


def is_generated(kind: str) -> bool:
    return kind in GENERATED


def make_target(kind: str, n: int, seed: int) -> Target:
    """Target ``kind`` (a generated kind at size ``n`` for ``seed``, or a file; see the module docs)."""
    if is_generated(kind):
        weight = _generated(kind, n, seed)
        return Target(kind, weight, f"{kind} {n}x{n}" + ("" if kind == "dct" else f", seed {seed}"))
    weight = load_target_file(kind)
    return Target(kind, weight, f"{Path(kind.partition('.pt:')[0]).stem}"
                                f"{':' + kind.partition('.pt:')[2] if '.pt:' in kind else ''} "
                                f"{weight.shape[0]}x{weight.shape[1]}")
