"""The amino-acid environment classifier: the encoder's invariant features, an MLP head, 20 logits."""

from __future__ import annotations

from torch import Tensor, nn

from atompaint.heads import HeadConfig, MLPHead
from structlayers.base import device_dtype


class ResidueEnvClassifier(nn.Module):
    """Which amino acid sits at the centre of this environment?  ``forward(x) -> logits (B, num_classes)``.

    The residue type does not change when the environment is rotated, so the head reads the
    encoder's rotation-invariant features (:meth:`Encoder.forward`), not its equivariant fields.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, head: HeadConfig) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least two classes, got {num_classes}")
        self.encoder = encoder
        self.num_classes = num_classes
        self.head = MLPHead(encoder.out_features, num_classes, head)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))

    def replace_head(self, head: HeadConfig) -> ResidueEnvClassifier:
        """Swap in a new (e.g. compressed) head of the same shape, keeping the encoder."""
        self.head = MLPHead(self.head.in_features, self.num_classes, head).to(device_dtype(self)[0])
        return self
