"""The layer registry: plugins register by name; third parties through an entry-point group.

A third-party package exposes layers with, in its ``pyproject.toml``::

    [project.entry-points."structlayers.layers"]
    mylayer = "mypackage.layers:MyLayer"

The entry point may name a :class:`~structlayers.layers.base.StructuredLinear` subclass (registered
under the entry point's name) or a module whose import registers layers with :func:`register`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from structlayers.layers.base import StructuredLinear

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
            raise ValueError(f"layer name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
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


def available() -> dict[str, type[StructuredLinear]]:
    """All registered layers, built-in and from entry points, by name."""
    import structlayers.layers  # noqa: F401  (registers the built-in plugins)

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


def create(name: str, in_features: int, out_features: int, **layer_options: Any) -> StructuredLinear:
    """Build the layer registered as ``name``; unknown names or options raise a ``ValueError``."""
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
