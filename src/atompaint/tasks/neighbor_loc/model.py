"""The neighbor-location classifier: one encoder shared by both views, an MLP head on their fields."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from atompaint.heads import HeadConfig
from atompaint.tasks.common import Classifier


class NeighborLocClassifier(Classifier):
    """Where is view B relative to view A?  Both views go through one shared encoder, their
    features are concatenated and an MLP scores the direction classes.

    The features are the encoder's pooled *equivariant* fields (:meth:`Encoder.fields`; at band
    limit 2 a field of ``c`` spectral regular channels has ``35 c`` numbers, so 16 channels give
    an MLP input of 2 views x 16 x 35 = 1120): the label is a direction in the image frame, so
    rotating both views changes it, and rotation-invariant features of the views cannot predict it
    better than chance.  ``forward(view_a, view_b) -> logits (B, num_classes)``.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, head: HeadConfig) -> None:
        super().__init__(encoder, 2 * encoder.field_features, num_classes, head)

    def features(self, view_a: Tensor, view_b: Tensor) -> Tensor:
        """Concatenated field features ``(B, 2 * encoder.field_features)``; one encoder call for both views."""
        both = self.encoder.fields(torch.cat([view_a, view_b], dim=0))
        a, b = both.chunk(2, dim=0)
        return torch.cat([a, b], dim=1)

    def forward(self, view_a: Tensor, view_b: Tensor) -> Tensor:
        return self.head(self.features(view_a, view_b))
