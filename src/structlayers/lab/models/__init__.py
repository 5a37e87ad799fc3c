"""Built-in models for the sanity runs and ``structlayers count``, by name.

>>> from structlayers.lab.models import build_model, example_input
>>> model = build_model("resnet18")
>>> x = example_input("resnet18", batch_size=1)   # (1, 3, 32, 32)

Besides the built-in names, ``timm:<name>`` and ``torchvision:<name>`` build those packages' models
with random weights (:mod:`structlayers.lab.models.zoo`; the ``zoo`` extra).
"""

from __future__ import annotations

import ast
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from structlayers.configs import coerce
from structlayers.lab.models.mnist import MNISTMLP, MNISTStack, MNISTStackLinear
from structlayers.lab.models.resnet import BasicBlock, ResNet, WideBasic, WideResNet, resnet18, wrn_28_10
from structlayers.lab.models.zoo import build_zoo_model, is_zoo_name, zoo_input_shape
from structlayers.lightning.checkpoints import check_state_dict, read_state_dict


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
    #: A zoo model (timm / torchvision): any dataset, options untyped, input shape read off the model.
    zoo: bool = False


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
    if is_zoo_name(name):
        return ModelSpec(name, functools.partial(build_zoo_model, name), (3, 224, 224), "",
                         f"{name} from {name.partition(':')[0]} (random initialisation)", zoo=True)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; built-in models: {', '.join(MODELS)}, or timm:<name>, "
                         "torchvision:<name>")
    return MODELS[name]


def model_name(text: str) -> str:
    """An argparse type: a built-in model name or a zoo name (``timm:...``, ``torchvision:...``)."""
    get_spec(text)
    return text


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model ``name``; ``kwargs`` go to its constructor (e.g. ``num_classes``).  Options
    the constructor cannot build from (``hidden=-1``) are a one-line ``ValueError``."""
    builder = get_spec(name).builder
    try:
        return builder(**kwargs)
    except (RuntimeError, TypeError) as err:  # torch's errors of a negative or ill-typed size
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"model {name!r} cannot be built with {kwargs}: {reason}") from None


def _literal(text: Any) -> Any:
    """A zoo option's value from text: a Python literal (``10``, ``0.1``, ``True``, ``(32, 32)``) or
    the text itself."""
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False}.get(text.lower(), text)


def parse_model_options(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments of model ``name`` given as text (``-m width=16``), checked and
    converted against the constructor's annotations; unknown names are errors.  Zoo models take
    any option, read as a Python literal (their constructors check them)."""
    if is_zoo_name(name):
        return {k: _literal(v) for k, v in raw.items()}
    builder = get_spec(name).builder
    signature = inspect.signature(builder)
    hints = typing.get_type_hints(builder.__init__ if isinstance(builder, type) else builder)
    named = {p.name for p in signature.parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    unknown = sorted(set(raw) - named)
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
                         f"its options are: {', '.join(sorted(named))} (layer options go to -o)")
    return {k: coerce(v, hints.get(k, Any), f"model option {k!r}") for k, v in raw.items()}


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load ``path`` into ``model`` in place: a plain ``state_dict`` or a Lightning checkpoint of a
    ``structlayers train`` run (whose ``state_dict`` keys start with ``model.``).  A file that is
    not such weights, or weights of another model, is a one-line
    :class:`~structlayers.lightning.CheckpointError` naming the file and what it holds."""
    state, contents = read_state_dict(path, "--weights", strip_prefix="model.")
    check_state_dict(model, state, f"--weights {path} ({contents})")
    model.load_state_dict(state)
    return model


def input_shape(name: str, model: nn.Module | None = None) -> tuple[int, ...]:
    """The shape of one input of model ``name`` (a zoo model's is read off the built ``model``)."""
    spec = get_spec(name)
    if spec.zoo and model is not None:
        return zoo_input_shape(name, model)
    return spec.input_shape


def example_input(name: str, batch_size: int = 1, model: nn.Module | None = None) -> torch.Tensor:
    """A zero input batch of the shape model ``name`` expects (see :func:`input_shape`)."""
    return torch.zeros(batch_size, *input_shape(name, model))


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
    "input_shape",
    "is_zoo_name",
    "load_weights",
    "model_name",
    "parse_model_options",
    "resnet18",
    "wrn_28_10",
]
