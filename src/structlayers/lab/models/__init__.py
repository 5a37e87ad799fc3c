"""Built-in models for the sanity runs and ``structlayers count``, by name.

>>> from structlayers.lab.models import build_model, example_input
>>> model = build_model("resnet18")
>>> x = example_input("resnet18", batch_size=1)   # (1, 3, 32, 32)
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from structlayers.configs import coerce
from structlayers.lab.models.mnist import MNISTMLP, MNISTStack, MNISTStackLinear
from structlayers.lab.models.resnet import BasicBlock, ResNet, WideBasic, WideResNet, resnet18, wrn_28_10


@dataclass(frozen=True)
class ModelSpec:
    """A built-in model: its constructor, the shape of one input and the dataset it is built for."""

    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    dataset: str
    description: str
    #: Whether the model is made of layer plugins itself (its constructor takes ``factor``/``depth``).
    structured: bool = False


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("resnet18", resnet18, (3, 32, 32), "cifar10", "ResNet18 for CIFAR (kuangliu/pytorch-cifar)"),
        ModelSpec("wrn-28-10", wrn_28_10, (3, 32, 32), "cifar10", "Wide ResNet 28-10 for CIFAR"),
        ModelSpec(
            "mnist-stack", MNISTStack, (1, 28, 28), "mnist", "stack of structured factors 784 -> 10, no dense layer",
            True,
        ),
        ModelSpec(
            "mnist-stack-linear", MNISTStackLinear, (1, 28, 28), "mnist", "stack 784 -> 64, ReLU, Linear(64, 10)", True
        ),
        ModelSpec("mnist-mlp", MNISTMLP, (1, 28, 28), "mnist", "dense MLP 784 -> 64 (-> 64 ...) -> 10"),
    )
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; built-in models: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the built-in model ``name``; ``kwargs`` go to its constructor (e.g. ``num_classes``)."""
    return get_spec(name).builder(**kwargs)


def parse_model_options(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments of model ``name`` given as text (``-m width=16``), checked and
    converted against the constructor's annotations; unknown names are errors."""
    builder = get_spec(name).builder
    signature = inspect.signature(builder)
    hints = typing.get_type_hints(builder.__init__ if isinstance(builder, type) else builder)
    named = {p.name for p in signature.parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    unknown = sorted(set(raw) - named)
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
                         f"its options are: {', '.join(sorted(named))} (layer options go to -o)")
    return {k: coerce(v, hints.get(k, Any), f"model option {k!r}") for k, v in raw.items()}


def example_input(name: str, batch_size: int = 1) -> torch.Tensor:
    """A zero input batch of the shape model ``name`` expects."""
    return torch.zeros(batch_size, *get_spec(name).input_shape)


__all__ = [
    "MODELS",
    "BasicBlock",
    "MNISTMLP",
    "MNISTStack",
    "MNISTStackLinear",
    "ModelSpec",
    "ResNet",
    "WideBasic",
    "WideResNet",
    "build_model",
    "example_input",
    "get_spec",
    "parse_model_options",
    "resnet18",
    "wrn_28_10",
]
