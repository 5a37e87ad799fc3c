"""The layer registry: plugins register by name; third parties through an entry-point group.

A leaf module (it imports only :mod:`structlayers.base`): plugins import it to register, and
:func:`create` is the one place that turns a layer name plus a depth into a stack.  Built-in
plugins register when :mod:`structlayers` is imported (its ``__init__`` imports
:mod:`structlayers.layers`), as timm's model modules do with ``timm.models._registry``.

A third-party package exposes layers with, in its ``pyproject.toml``::

    [project.entry-points."structlayers.layers"]
    mylayer = "mypackage.layers:MyLayer"

The entry point may name a :class:`~structlayers.base.StructuredLinear` subclass (registered
under the entry point's name) or a module whose import registers layers with :func:`register`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from structlayers.base import StructuredLinear
from structlayers.configs import coerce

ENTRY_POINT_GROUP = "structlayers.layers"

_REGISTRY: dict[str, type[StructuredLinear]] = {}
_entry_points_loaded = False

L = TypeVar("L", bound=type[StructuredLinear])


def register(name: str) -> Callable[[L], L]:
    """Class decorator registering a layer plugin under ``name``."""

    def decorate(cls: L) -> L:
        if not (isinstance(cls, type) and issubclass(cls, StructuredLinear)):
            raise TypeError(f"layer {name!r} must subclass StructuredLinear, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"layer name {name!r} is already registered by "
                             f"{existing.__module__}.{existing.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as err:  # a broken plugin must not break the library
            warnings.warn(f"structlayers: could not load layer plugin {ep.name!r} ({ep.value}): {err}", stacklevel=2)
            continue
        if isinstance(obj, type) and issubclass(obj, StructuredLinear) and ep.name not in _REGISTRY:
            register(ep.name)(obj)


def reload_entry_points() -> None:
    """Discover entry points again (after installing a plugin in a running session)."""
    global _entry_points_loaded
    _entry_points_loaded = False
    _load_entry_points()


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (a test that registered a temporary plugin cleans up)."""
    _REGISTRY.pop(name, None)


def available() -> dict[str, type[StructuredLinear]]:
    """All registered layers, built-in and from entry points, by name."""
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> type[StructuredLinear]:
    layers = available()
    if name not in layers:
        raise ValueError(f"unknown layer {name!r}; available layers: {', '.join(layers)}")
    return layers[name]


@dataclass(frozen=True)
class OptionInfo:
    """One constructor option of a layer, as shown by ``structlayers layers``."""

    name: str
    default: Any
    annotation: str


def options(name: str) -> list[OptionInfo]:
    """The keyword options a layer accepts besides ``in_features`` and ``out_features``."""
    sig = inspect.signature(get(name).__init__)
    out = []
    for p in list(sig.parameters.values())[3:]:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", str(p.annotation))
        out.append(OptionInfo(p.name, None if p.default is p.empty else p.default, ann))
    return out


def option_types(name: str, layer_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{option: annotated type}`` of layer ``name`` built with ``layer_options`` (a stack also
    accepts its factor's options, which it passes on)."""
    return get(name).option_types(layer_options or {})


def accepted_options(name: str, layer_options: dict[str, Any] | None = None) -> set[str]:
    """Names of the options that layer ``name`` built with ``layer_options`` accepts."""
    return set(option_types(name, layer_options))


def parse_options(name: str, raw: dict[str, Any], depth: int | None = None) -> dict[str, Any]:
    """Layer options as given on a command line or in YAML (``{"bias": "false", "sigma": "0.1"}``),
    each checked and converted against the annotation of the option of the layer that ``name``
    and ``depth`` resolve to (:func:`resolve`): ``bias=false`` is ``False``, ``sigma=abc`` and
    ``sigma=inf`` are errors naming the option.  Unknown options are errors too."""
    if "depth" in raw and depth is not None:
        raise ValueError(f"layer {name!r}: the depth is given twice ({depth} and the option depth={raw['depth']!r})")
    resolved, layer_options = resolve(name, depth, **raw)
    types = option_types(resolved, layer_options)
    unknown = sorted(set(raw) - set(types))
    if unknown:
        raise ValueError(f"layer {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
                         f"its options are: {', '.join(sorted(types)) or '(none)'}")
    return {key: coerce(value, types[key], f"layer option {key!r}") for key, value in raw.items()}


def resolve(name: str, depth: int | None = None, **layer_options: Any) -> tuple[str, dict[str, Any]]:
    """``(plugin, options)`` for a layer name and an optional depth, the rule every caller shares:
    without a depth, the layer itself; ``stack`` takes the depth as its own; any other layer with a
    depth (1 included) is a stack of ``depth`` such factors, and must be stackable."""
    if depth is None:
        return name, dict(layer_options)
    if name == "stack":
        return "stack", {**layer_options, "depth": depth}
    if not get(name).stackable:
        raise ValueError(f"layer {name!r} cannot be stacked, so it takes no depth (got depth={depth!r})")
    if "factor" in layer_options:
        raise ValueError(f"layer {name!r} with a depth is a stack of {name!r} factors; it takes no 'factor' option")
    return "stack", {**layer_options, "factor": name, "depth": depth}


def create(
    name: str, in_features: int, out_features: int, depth: int | None = None, **layer_options: Any
) -> StructuredLinear:
    """Build the layer registered as ``name`` (a stack of ``depth`` of them when ``depth`` is given;
    see :func:`resolve`); unknown names or options raise a ``ValueError``."""
    name, layer_options = resolve(name, depth, **layer_options)
    cls = get(name)
    accepted = {o.name for o in options(name)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    unknown = sorted(set(layer_options) - accepted)
    if unknown and not takes_any:
        raise ValueError(
            f"layer {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(sorted(accepted)) or '(none)'}"
        )
    return cls(in_features, out_features, **layer_options)
