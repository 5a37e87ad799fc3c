"""``mixing: auto``: each layer's channel mixing chosen by its measured training cost on this machine.

FLOPs do not say which mixing trains fastest: at the multiplicities of the seed-004 encoder (2 to 80
copies per irrep) ACDC x2 counts more FLOPs than dense per-irrep blocks and runs slower, while wider
layers can turn this around, and the answer depends on the CPU.  So every
:class:`~atompaint.encoders.mixing.IrrepMixing` of an encoder is built once in each candidate form
(any structlayers plugins, dense per-irrep blocks included) and the candidates' forward + backward
passes are timed interleaved on the input shape that layer sees in training; the fastest wins.
This is :func:`structlayers.collapse`'s measure-and-cache machinery (:mod:`structlayers.utils.costs`)
extended from inference to training: timings are cached in memory and on disk
(:class:`structlayers.utils.cache.Measurements`) per layer shape, candidates, input shape and machine,
so building the same encoder again measures nothing.

The choices are recorded by name (``{"body.1.conv1.mixing": "acdc:depth=2", ...}``) in the built
encoder's configuration (``EncoderConfig.mixing_choices``; rebuilding from it measures nothing and
gives the same model) and in its ``state_dict`` (extra state), so every checkpoint says which
mixing each layer got.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from atompaint.encoders.mixing import IrrepLayout, IrrepMixing, MixingSpec
from structlayers.registry import LayerSpec
from structlayers.utils.cache import Measurements
from structlayers.utils.timing import time_interleaved
from structlayers.utils.tracing import record_shapes, run_example

#: Candidates when a configuration names none: dense per-irrep blocks and ACDC x2.
DEFAULT_CANDIDATES: tuple[str, ...] = ("dense", "acdc:depth=2")

#: ``timer(modules, input_shape) -> seconds per module``: forward + backward of each candidate
#: mixing (plain :class:`~atompaint.encoders.mixing.PerIrrepLinear`) on inputs of ``input_shape``.
MixingTimer = Callable[[Sequence[nn.Module], tuple[int, ...]], list[float]]

_MEASURED: Measurements[str, list[float]] = Measurements(
    "mixing_auto", lambda v: [float(s) for s in v] if isinstance(v, list) else None)


def candidate_spec(text: str) -> MixingSpec:
    """A candidate from its text form (``"acdc:depth=2"``, ``"lowrank:rank=4"``; see
    :meth:`structlayers.LayerSpec.parse`), checked against its plugin."""
    return LayerSpec.parse(text)


def train_step_seconds(modules: Sequence[nn.Module], shape: tuple[int, ...], repeats: int = 5) -> list[float]:
    """Median forward + backward seconds of each module on a random input of ``shape``, interleaved
    (:func:`structlayers.utils.timing.time_interleaved`): the input requires grad, as inside a network."""
    device = next((p.device for m in modules for p in m.parameters()), torch.device("cpu"))
    x = torch.randn(shape, device=device, requires_grad=True)

    def step(module: nn.Module) -> Callable[[], None]:
        def run() -> None:
            y = module(x)
            y.backward(torch.ones_like(y))
            module.zero_grad(set_to_none=True)
            x.grad = None

        return run

    timings = time_interleaved([step(m) for m in modules], device, warmup=1, repeats=repeats, min_time=2e-3)
    return [t.median for t in timings]


def _layer_key(mixing: IrrepMixing, candidates: Sequence[str], shape: tuple[int, ...]) -> str:
    layouts = [IrrepLayout.of(t) for t in (mixing.in_type, mixing.out_type)]
    signature = repr([sorted((k, len(v)) for k, v in layout.positions.items()) for layout in layouts])
    signature += repr([layout.basis is None for layout in layouts]) + repr(list(candidates))
    digest = hashlib.sha1(signature.encode()).hexdigest()[:16]
    return f"mixing|{digest}|{tuple(shape)}"


def measured_seconds(mixing: IrrepMixing, candidates: Sequence[str], shape: tuple[int, ...],
                     timer: MixingTimer | None = None) -> list[float]:
    """Training seconds of ``mixing``'s layer in each candidate form on inputs of ``shape``; with the
    default timer, measured once per layer shape, candidates, input shape and machine, and cached."""
    def measure() -> list[float]:
        modules = [IrrepMixing(mixing.in_type, mixing.out_type, candidate_spec(c),
                               bias=mixing.linear.trivial_key is not None).linear for c in candidates]
        return list((timer or train_step_seconds)(modules, shape))

    if timer is not None:
        return measure()
    return _MEASURED.get(_layer_key(mixing, candidates, shape), "cpu", measure)


def mixing_layers(model: nn.Module) -> dict[str, IrrepMixing]:
    """Every :class:`IrrepMixing` of ``model`` by its module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, IrrepMixing)}


def mixing_input_shapes(model: nn.Module, example: Tensor, batch: int) -> dict[str, tuple[int, ...]]:
    """The input shape ``(batch, C, *spatial)`` each mixing sees when ``model`` runs on ``example``
    (one example traced; spatial sizes do not depend on the batch)."""
    layers = mixing_layers(model)
    with record_shapes(dict(layers)) as shapes:
        run_example(model, example)
    found = {}
    for name in layers:
        if shapes[name].calls:
            channels = layers[name].in_type.size
            found[name] = (batch, channels, *shapes[name].outputs[0][2:])
    return found


def choose_mixing(model: nn.Module, example: Tensor, candidates: Sequence[str], batch: int,
                  timer: MixingTimer | None = None) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """The fastest candidate of every mixing layer of ``model`` for training at ``batch`` inputs, and
    every candidate's seconds per layer (the record of the decision)."""
    if not candidates:
        raise ValueError("mixing 'auto' needs at least one candidate")
    for text in candidates:
        candidate_spec(text)
    shapes = mixing_input_shapes(model, example, batch)
    layers = mixing_layers(model)
    choices, seconds = {}, {}
    for name, shape in shapes.items():
        times = measured_seconds(layers[name], candidates, shape, timer)
        seconds[name] = dict(zip(candidates, times))
        choices[name] = candidates[min(range(len(candidates)), key=times.__getitem__)]
    return choices, seconds


def apply_mixing_choices(model: nn.Module, choices: Mapping[str, str]) -> None:
    """Rebuild each named mixing of ``model`` in its chosen form (in module order, so the same
    choices under the same seed give the same weights)."""
    layers = mixing_layers(model)
    unknown = sorted(set(choices) - set(layers))
    if unknown:
        raise ValueError(f"mixing choices name layers this encoder does not have: {', '.join(unknown)}")
    for name, mixing in layers.items():
        if name in choices:
            fresh = IrrepMixing(mixing.in_type, mixing.out_type, candidate_spec(choices[name]),
                                bias=mixing.linear.trivial_key is not None)
            mixing.spec, mixing.linear = fresh.spec, fresh.linear


def describe_choices(choices: Mapping[str, str]) -> str:
    """``"auto: dense x4, acdc:depth=2 x3"``: how many layers got each mixing."""
    counts: dict[str, int] = {}
    for text in choices.values():
        counts[text] = counts.get(text, 0) + 1
    return "auto: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))

