"""The ligand-binding-affinity regressor: an encoder's invariant features, an MLP head, one number."""

from __future__ import annotations

from torch import Tensor, nn

from atompaint.heads import HeadConfig, MLPHead
from structlayers.base import device_dtype


class AffinityRegressor(nn.Module):
    """Ligand binding affinity (``-log10 K``) from one voxelized pocket: ``forward(x) -> (B,)``."""

    def __init__(self, encoder: nn.Module, head: HeadConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = MLPHead(encoder.out_features, 1, head)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x)).squeeze(-1)

    def replace_head(self, head: HeadConfig) -> AffinityRegressor:
        """Swap in a new (e.g. compressed) head of the same shape, keeping the encoder."""
        self.head = MLPHead(self.head.in_features, 1, head).to(device_dtype(self)[0])
        return self
