"""Record the input and output shapes each module sees while a model runs an example input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class CallShapes:
    """Shapes of every call of one module (a shared module can be called several times)."""

    inputs: list[tuple[int, ...]] = field(default_factory=list)
    outputs: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.inputs)


_UNWRAPPERS: dict[type, Callable[[Any], torch.Tensor]] = {}


def register_tensor_type(cls: type, unwrap: Callable[[Any], torch.Tensor]) -> None:
    """Teach the tracer a tensor wrapper that modules take and return (an application's
    ``GeometricTensor``, say): ``unwrap(obj)`` gives the plain tensor whose shape is recorded."""
    _UNWRAPPERS[cls] = unwrap


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for item in obj:
            t = _first_tensor(item)
            if t is not None:
                return t
        return None
    for cls, unwrap in _UNWRAPPERS.items():
        if isinstance(obj, cls):
            return unwrap(obj)
    return None


@contextmanager
def record_shapes(modules: dict[str, nn.Module]) -> Iterator[dict[str, CallShapes]]:
    """Within the context, every call of the named modules appends its shapes to the result."""
    shapes = {name: CallShapes() for name in modules}
    handles = []

    def hook_for(name: str) -> Callable:
        def hook(_module: nn.Module, args: tuple, output: Any) -> None:
            x, y = _first_tensor(args), _first_tensor(output)
            if x is not None and y is not None:
                shapes[name].inputs.append(tuple(x.shape))
                shapes[name].outputs.append(tuple(y.shape))

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        yield shapes
    finally:
        for h in handles:
            h.remove()


def run_example(model: nn.Module, example_input: Any) -> Any:
    """Run ``model`` on ``example_input`` (a tensor, a tuple of positional args or a kwargs dict)
    in eval mode without gradients, restoring the training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(example_input, dict):
                return model(**example_input)
            if isinstance(example_input, tuple):
                return model(*example_input)
            return model(example_input)
    finally:
        model.train(was_training)
