"""MNIST models on flattened 28x28 images, after the stacked-ACDC classifiers of Moczulski et al.
(2016, "ACDC: A Structured Efficient Linear Layer").

``MNISTStack``: one stack of structured factors on the 784 pixels and no dense layer at all; the
stack pads to its square size and the first 10 outputs are the logits.  ``MNISTStackLinear``: a
stack 784 -> 64, ReLU, then a dense ``Linear(64, 10)``.  ``MNISTMLP`` is the dense counterpart of
the latter, for surgery and baselines.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

import structlayers

IMAGE_FEATURES = 28 * 28


class MNISTStack(nn.Module):
    """Flatten -> ``stack(784 -> num_classes, factor, depth)``; no dense layer."""

    def __init__(self, factor: str = "acdc", depth: int = 32, num_classes: int = 10, activation: str | None = "relu",
                 **layer_options: Any) -> None:
        super().__init__()
        self.stack = structlayers.create(
            factor, IMAGE_FEATURES, num_classes, depth=depth, activation=activation, **layer_options
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.stack(x.flatten(1))


class MNISTStackLinear(nn.Module):
    """Flatten -> ``stack(784 -> hidden, factor, depth)`` -> ReLU -> ``Linear(hidden, num_classes)``."""

    def __init__(
        self,
        factor: str = "acdc",
        depth: int = 12,
        hidden: int = 64,
        num_classes: int = 10,
        activation: str | None = "relu",
        **layer_options: Any,
    ) -> None:
        super().__init__()
        self.stack = structlayers.create(factor, IMAGE_FEATURES, hidden, depth=depth, activation=activation,
                                         **layer_options)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.stack(x.flatten(1))))


class MNISTMLP(nn.Module):
    """Flatten -> ``Linear(784, hidden)`` -> ReLU -> (``Linear(hidden, hidden)`` -> ReLU) x
    ``hidden_layers - 1`` -> ``Linear(hidden, num_classes)``; the square hidden layers give
    trained ``hidden x hidden`` weights (targets of the approximation experiment)."""

    def __init__(self, hidden: int = 64, num_classes: int = 10, hidden_layers: int = 1) -> None:
        super().__init__()
        if hidden_layers < 1:
            raise ValueError(f"hidden_layers must be >= 1, got {hidden_layers}")
        self.fc1 = nn.Linear(IMAGE_FEATURES, hidden)
        self.relu = nn.ReLU()
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(hidden_layers - 1))
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.fc1(x.flatten(1)))
        for layer in self.hidden:
            h = self.relu(layer(h))
        return self.fc2(h)
