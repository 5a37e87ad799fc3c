"""Initialisations for the learned diagonals of ACDC / AFDF factors, selectable by name.

``normal`` is the paper's recommendation, N(1, sigma^2) with sigma = 1e-2 by default; ``identity``
sets every entry to 1 (the factor starts as the identity map); ``uniform`` draws U(-1, 1), the other
choice found in the reference code.
"""

from __future__ import annotations

import torch
from torch import Tensor

INITS = ("normal", "identity", "uniform")


def check_init(layer: str, init: str, sigma: float) -> None:
    if init not in INITS:
        raise ValueError(f"layer {layer!r}: unknown init {init!r}; expected one of {INITS}")
    if not sigma >= 0:
        raise ValueError(f"layer {layer!r}: sigma must be >= 0, got {sigma!r}")


@torch.no_grad()
def init_diagonal(diag: Tensor, init: str, sigma: float = 1e-2) -> Tensor:
    """Fill ``diag`` in place according to ``init`` and return it."""
    if init == "normal":
        return diag.normal_(1.0, sigma)
    if init == "identity":
        return diag.fill_(1.0)
    if init == "uniform":
        return diag.uniform_(-1.0, 1.0)
    raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
