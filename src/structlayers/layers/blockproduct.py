"""Common structure of Monarch and Kronecker: a weight made of ``rank`` products of two factors over
a grid of ``nblocks x nblocks`` blocks, on the zero-padded input and the cropped output."""

from __future__ import annotations

from abc import abstractmethod
from typing import Annotated

import torch
from torch import Tensor, nn

from structlayers.base import FlopCount, StructuredLinear, dense_weight_dtype, rows_of
from structlayers.configs import Words
from structlayers.layers.init import LINEAR_ALIASES
from structlayers.layers.projection import block_count

#: Initialisations of the block-product families (words of :mod:`structlayers.layers.init`):
#: ``linear`` gives the weight entries ``nn.Linear``'s variance; ``project`` is the projection
#: (``project_padded_``) of an ``nn.Linear``-initialised dense weight.
INITS = Words(("linear", "project"), LINEAR_ALIASES)


class BlockProductLayer(StructuredLinear):
    """Base of the block-product layers: ``nblocks`` ``b`` (default near ``sqrt(max(in, out))``)
    splits the input, zero-padded to ``b in_block`` (``in_block = ceil(in / b)``), and the output,
    cropped from ``b out_block`` (``out_block = ceil(out / b)``).  Subclasses create their two
    factors (``build_factors``, before the bias) and give the padded dense weight, its closed-form
    start on padded shapes and the per-row matmul FLOPs and factor parameter counts."""

    stackable = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        nblocks: int | None = None,
        rank: int = 1,
        bias: bool = True,
        init: Annotated[str, INITS] = "linear",
    ) -> None:
        super().__init__(in_features, out_features)
        self.init = self.check_word("init", init, INITS)
        self.nblocks = block_count(self.name, in_features, out_features, nblocks, rank)
        self.rank = rank
        self.in_block, self.out_block = -(-in_features // self.nblocks), -(-out_features // self.nblocks)
        self.build_factors()
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters()

    @abstractmethod
    def build_factors(self) -> None:
        """Create the two factor parameters (called once from ``__init__``)."""

    @abstractmethod
    def reset_parameters(self) -> None:
        """Initialise the factors according to ``self.init`` and zero the bias."""

    @abstractmethod
    def padded_dense(self) -> Tensor:
        """The weight on the padded sizes, ``(b out_block, b in_block)``, in float64 on the CPU."""

    @abstractmethod
    def project_padded_(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """The closed-form projection applied to the zero-padded ``weight`` on any shape: the start
        of ``init="project"``."""

    @abstractmethod
    def row_flops(self) -> int:
        """Matmul FLOPs of the forward per input row."""

    @abstractmethod
    def factor_params(self) -> int:
        """Parameters of the two factors."""

    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        dtype = dense_weight_dtype(self)
        self.check_dense_memory(16 + torch.empty((), dtype=dtype).element_size())  # float64 work, crop, result
        weight = self.padded_dense()[: self.out_features, : self.in_features]
        bias = self.bias.detach().clone() if self.bias is not None else None
        return weight.to(dtype).contiguous(), bias

    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        rows = rows_of(batch_shape)
        return FlopCount(matmul=rows * self.row_flops(),
                         elementwise=rows * self.out_features if self.bias is not None else 0)

    def params(self) -> int:
        return self.factor_params() + (self.out_features if self.bias is not None else 0)
