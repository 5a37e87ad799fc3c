"""The amino-acid environment classifier: the encoder's invariant features, an MLP head, 20 logits."""

from __future__ import annotations

from torch import Tensor, nn

from atompaint.heads import HeadConfig
from atompaint.tasks.common import Classifier


class ResidueEnvClassifier(Classifier):
    """Which amino acid sits at the centre of this environment?  ``forward(x) -> logits (B, num_classes)``.

    The residue type does not change when the environment is rotated, so the head reads the
    encoder's rotation-invariant features (:meth:`Encoder.forward`), not its equivariant fields.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, head: HeadConfig) -> None:
        super().__init__(encoder, encoder.out_features, num_classes, head)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))
