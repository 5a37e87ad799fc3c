"""The one vocabulary of the ``init`` option of every plugin, and the diagonal initialisations.

| word       | what the layer starts as (plugins)                                                                |
|------------|---------------------------------------------------------------------------------------------------|
| `normal`   | diagonals N(1, sigma^2), a near-identity (acdc, afdf); twiddles N(0, 1/2) (butterfly)             |
| `identity` | the identity map (acdc, afdf); plus N(0, 1e-2^2) noise (circulant, toeplitz)                      |
| `uniform`  | diagonals U(-1, 1), the reference code's other choice (acdc, afdf)                                |
| `linear`   | entries drawn like `nn.Linear`'s weight (monarch, kronecker, circulant, toeplitz)                 |
| `project`  | the projection of a dense matrix drawn like `nn.Linear`'s (monarch, kronecker)                    |
| `ortho`    | an orthogonal product, every 2x2 twiddle a random rotation (butterfly)                            |

``uniform`` meant ``linear`` for monarch, kronecker, circulant and Toeplitz before: there it is a
deprecated alias (:data:`LINEAR_ALIASES`) that warns.  Replacing a trained model's layers
(:func:`structlayers.replace`) has its own words for where replacements start (``init_from``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

#: Every word of the ``init`` option (what each means: the table above).
INIT_WORDS = ("normal", "identity", "uniform", "linear", "project", "ortho")
#: The words of the diagonal families (ACDC, AFDF, diagonal).
INITS = ("normal", "identity", "uniform")
#: Old words of the families initialised like ``nn.Linear``, accepted with a warning.
LINEAR_ALIASES: dict[str, str] = {"uniform": "linear"}


def check_word(name: str, value: str, accepted: Sequence[str], aliases: Mapping[str, str] | None = None,
               *, owner: str = "") -> str:
    """``value`` of the option ``name`` checked against ``accepted``; a deprecated alias (``aliases``)
    warns and is replaced by its word.  One rule for every vocabulary of words (layer inits here,
    ``replace``'s starts); ``owner`` prefixes the messages (the layer)."""
    prefix = f"{owner}: " if owner else ""
    if aliases and value in aliases:
        warnings.warn(f"{prefix}{name}={value!r} is deprecated and will be removed in the next release; "
                      f"use {name}={aliases[value]!r}", DeprecationWarning, stacklevel=3)
        value = aliases[value]
    if value not in accepted:
        raise ValueError(f"{prefix}unknown {name} {value!r}; expected one of {tuple(accepted)}")
    return value


def check_init(layer: str, init: str, accepted: Sequence[str] = INITS,
               aliases: Mapping[str, str] | None = None) -> str:
    """``init`` checked against the words of :data:`INIT_WORDS` that ``layer`` accepts (the table
    above says what each word means)."""
    return check_word("init", init, accepted, aliases, owner=f"layer {layer!r}")


def check_sigma(layer: str, sigma: float) -> None:
    if not sigma >= 0:
        raise ValueError(f"layer {layer!r}: sigma must be >= 0, got {sigma!r}")


@torch.no_grad()
def init_diagonal(diag: Tensor, init: str, sigma: float = 1e-2) -> Tensor:
    """Fill ``diag`` in place according to ``init`` (one of :data:`INITS`) and return it."""
    if init == "normal":
        return diag.normal_(1.0, sigma)
    if init == "identity":
        return diag.fill_(1.0)
    if init == "uniform":
        return diag.uniform_(-1.0, 1.0)
    raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
