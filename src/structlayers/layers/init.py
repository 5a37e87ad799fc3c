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
deprecated alias (:data:`LINEAR_ALIASES`) that warns.  Each plugin declares the words its ``init``
takes as a :class:`~structlayers.configs.Words` in the option's annotation
(``init: Annotated[str, INITS]``), so a spec or ``create`` refuses another word when it is made,
and the constructor checks with the same vocabulary.  Replacing a trained model's layers
(:func:`structlayers.replace`) has its own words for where replacements start (``init_from``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from structlayers.configs import Words

#: Every word of the ``init`` option (what each means: the table above).
INIT_WORDS = ("normal", "identity", "uniform", "linear", "project", "ortho")
#: The words of the diagonal families (ACDC, AFDF).
INITS = Words(("normal", "identity", "uniform"))
#: Old words of the families initialised like ``nn.Linear``, accepted with a warning.
LINEAR_ALIASES: dict[str, str] = {"uniform": "linear"}


def check_sigma(layer: str, sigma: float) -> None:
    if not sigma >= 0:
        raise ValueError(f"layer {layer!r}: sigma must be >= 0, got {sigma!r}")


@torch.no_grad()
def init_diagonal(diag: Tensor, init: str, sigma: float = 1e-2) -> Tensor:
    """Fill ``diag`` in place according to ``init`` (a word of :data:`INITS`) and return it."""
    if init == "normal":
        return diag.normal_(1.0, sigma)
    if init == "identity":
        return diag.fill_(1.0)
    if init == "uniform":
        return diag.uniform_(-1.0, 1.0)
    raise ValueError(f"unknown init {init!r}; expected one of {INITS.accepted}")
