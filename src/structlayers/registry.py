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

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

from structlayers.base import StructuredLinear
from structlayers.configs import coerce, describe, name_words

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
    return [OptionInfo(p.name, None if p.default is p.empty else p.default, describe(p.annotation))
            for p in get(name).option_parameters()]


def option_types(name: str, layer_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{option: annotated type}`` of layer ``name`` built with ``layer_options`` (a stack also
    accepts its factor's options, which it passes on).  The vocabulary of a word-valued option
    (:class:`~structlayers.configs.Words`) names the option and the layer in its messages."""
    types = get(name).option_types(layer_options or {})
    return {key: name_words(hint, key, f"layer {name!r}") for key, hint in types.items()}


def accepted_options(name: str, layer_options: dict[str, Any] | None = None) -> set[str]:
    """Names of the options that layer ``name`` built with ``layer_options`` accepts."""
    return set(option_types(name, layer_options))


def parse_options(name: str, raw: Mapping[str, Any], depth: int | None = None) -> dict[str, Any]:
    """Layer options as given on a command line, in YAML or as keywords (``{"bias": "false",
    "sigma": "0.1"}``), each checked and converted against the annotation of the option of the
    layer that ``name`` and ``depth`` resolve to (:func:`resolve`): ``bias=false`` is ``False``,
    ``sigma=abc`` and ``sigma=inf`` are errors naming the option.  Unknown options are errors too.
    :func:`create` and :class:`LayerSpec` check their options with it."""
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
    see :func:`resolve`).  Options are checked as :func:`parse_options` checks them: unknown names,
    unknown options and ill-typed or non-finite values raise a ``ValueError`` naming them."""
    if depth is not None:
        depth = coerce(depth, int, f"layer {name!r}: depth")
    checked = parse_options(name, layer_options, depth)
    resolved, checked = resolve(name, depth, **checked)
    return get(resolved)(in_features, out_features, **checked)


@dataclass(frozen=True)
class LayerSpec:
    """A layer to build: a registered plugin ``name``, a stack ``depth`` (see :func:`resolve`) and
    the plugin's ``options``, checked and typed once, when the spec is made (:func:`parse_options`),
    so a bad spec fails where it is configured rather than where it is built.

    >>> spec = LayerSpec.parse("acdc:depth=12:sigma=0.1")
    >>> spec == LayerSpec("acdc", 12, {"sigma": 0.1})
    True
    >>> layer = spec.build(512, 512)

    Configurations hold one (``configs.from_dict`` reads the text form or a mapping
    ``{name, depth, options}``; ``configs.to_dict`` writes the mapping).
    """

    name: str = "dense"
    depth: int | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"a layer name must be a string, got {self.name!r}")
        if self.depth is not None:
            depth = coerce(self.depth, int, f"layer {self.name!r}: depth")
            if depth < 1:
                raise ValueError(f"layer {self.name!r}: depth must be positive, got {depth}")
            object.__setattr__(self, "depth", depth)
        if not isinstance(self.options, Mapping):
            raise TypeError(f"layer {self.name!r}: options must be a mapping, got {self.options!r}")
        object.__setattr__(self, "options", parse_options(self.name, self.options, self.depth))

    @classmethod
    def parse(cls, text: str) -> LayerSpec:
        """A spec from its text form ``name[:key=value...]``, where ``depth`` is the stack depth and
        every other key an option (``"acdc:depth=12:init=identity"``, ``"lowrank:rank=8"``)."""
        return cls(**cls.text_fields(text))

    @staticmethod
    def text_fields(text: str) -> dict[str, Any]:
        """The ``name``, ``depth`` and ``options`` of the text form, as text: split, not yet checked
        (a spec made of them checks them, once; ``configs.from_dict`` merges them with flat keys first)."""
        name, *pairs = [part.strip() for part in text.strip().split(":")]
        if not name:
            raise ValueError(f"layer {text!r}: expected name[:key=value...], the name is missing")
        raw: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"layer {text!r}: expected name:key=value, got {pair!r}")
            raw[key.strip()] = value.strip()
        depth = raw.pop("depth", None)
        return {"name": name, "depth": None if depth is None or depth.lower() in ("none", "null") else depth,
                "options": raw}

    def __str__(self) -> str:
        """The text form :meth:`parse` reads back."""
        depth = [] if self.depth is None else [f"depth={self.depth}"]
        return ":".join([self.name, *depth, *(f"{k}={_text(v)}" for k, v in self.options.items())])

    @property
    def label(self) -> str:
        """A short name for tables and legends: the layer and its depth (``acdc x12``)."""
        return self.name + (f" x{self.depth}" if self.depth is not None else "")

    def replace(self, **changes: Any) -> LayerSpec:
        """A copy with ``changes`` (``name``, ``depth``, ``options``), checked again."""
        return dataclasses.replace(self, **changes)

    def build(self, in_features: int, out_features: int, **overrides: Any) -> StructuredLinear:
        """The layer ``in_features -> out_features`` (:func:`create`), ``overrides`` over the options."""
        return create(self.name, in_features, out_features, depth=self.depth, **{**self.options, **overrides})


def _text(value: Any) -> str:
    """An option value as :func:`structlayers.configs.coerce` reads it back from text."""
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)
