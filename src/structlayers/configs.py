"""Typed configuration dataclasses from plain data (YAML, JSON, ``KEY=VALUE`` text) and back.

A component declares its options once, as a dataclass with defaults; :func:`from_dict` builds it
from a mapping (nested dataclasses recursively), checking every value against the field's
annotation and rejecting unknown keys, so a typo never falls back silently to a default.
:func:`coerce` is the same check for one value, used for layer options read from the command line;
a dataclass with a ``parse`` classmethod (:class:`structlayers.registry.LayerSpec`) also reads
from its text form.  A text option that takes one of a few words is annotated
``Annotated[str, Words(...)]`` (:class:`Words`), so that the words are checked wherever it is read.
The command-line flags generated from a dataclass (:mod:`structlayers.clikit`) read their defaults
from it, as minGPT's ``get_default_config()`` and Lightning's ``LightningCLI`` do.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import operator
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

T = TypeVar("T")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~"}


class ConfigError(ValueError):
    """A configuration value that does not fit its declared type, or an unknown key."""


@dataclass(frozen=True)
class Words:
    """The vocabulary of a text option: the ``accepted`` words and deprecated ``aliases`` (an old
    word and the word that replaces it), accepted with a warning.  An option annotated
    ``Annotated[str, Words(...)]`` is checked by :func:`coerce`; :meth:`check` is the same rule
    where a value arrives otherwise (a constructor called directly).  ``option`` and ``owner`` name
    the option and what it belongs to in messages (:meth:`named` sets them)."""

    accepted: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict, hash=False)
    option: str = ""
    owner: str = ""

    def named(self, option: str, owner: str = "") -> Words:
        """This vocabulary, its messages naming ``option`` of ``owner``."""
        return dataclasses.replace(self, option=option, owner=owner)

    def check(self, value: Any, option: str | None = None, owner: str | None = None) -> str:
        """``value`` if it is an accepted word, its replacement (with a ``DeprecationWarning``) if
        it is an alias; else :class:`ConfigError` naming the owner, the option, the value and the
        accepted words."""
        option = option or self.option or "value"
        owner = self.owner if owner is None else owner
        prefix = f"{owner}: " if owner else ""
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}{option}: expected one of {self.accepted}, got {value!r}")
        if value in self.aliases:
            warnings.warn(f"{prefix}{option}={value!r} is deprecated and will be removed in the next release; "
                          f"use {option}={self.aliases[value]!r}", DeprecationWarning, stacklevel=3)
            value = self.aliases[value]
        if value not in self.accepted:
            raise ConfigError(f"{prefix}unknown {option} {value!r}; expected one of {self.accepted}")
        return value


def name_words(hint: Any, option: str, owner: str = "") -> Any:
    """``hint`` with every :class:`Words` in it (``Annotated[str, Words(...)]``, alone or in a
    union) not named yet naming ``option`` of ``owner`` in its messages."""
    if typing.get_origin(hint) is Annotated:
        base, *metadata = typing.get_args(hint)
        named = (m.named(option, owner) if isinstance(m, Words) and not m.option else m for m in metadata)
        return Annotated[(base, *named)]
    if _is_union(hint):
        return functools.reduce(operator.or_, (name_words(arg, option, owner) for arg in typing.get_args(hint)))
    return hint


def vocabulary(hint: Any) -> Words | None:
    """The vocabulary an ``Annotated`` hint carries, if any."""
    if typing.get_origin(hint) is not Annotated:
        return None
    return next((m for m in typing.get_args(hint)[1:] if isinstance(m, Words)), None)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def describe(hint: Any) -> str:
    """A type as messages and listings show it (``int | None``; a vocabulary's words, ``'fft' | 'dense'``)."""
    if typing.get_origin(hint) is Annotated:
        words = vocabulary(hint)
        return " | ".join(map(repr, words.accepted)) if words else describe(typing.get_args(hint)[0])
    if _is_union(hint):
        return " | ".join(describe(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def _parse_text(text: str) -> Any:
    """A command-line word read as JSON where it is JSON (numbers, ``[1, 2]``); else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def coerce(value: Any, hint: Any, where: str = "value") -> Any:
    """``value`` checked against the type ``hint`` (and converted where that is lossless: text to
    a number or boolean, an int to a float, a list to a tuple).  Floats must be finite.  Raises
    :class:`ConfigError` naming ``where`` otherwise."""
    if hint is Any or hint is typing.Any:
        return value
    if typing.get_origin(hint) is Annotated:
        words = vocabulary(hint)
        value = coerce(value, typing.get_args(hint)[0], where)
        return words.check(value, words.option or where) if words else value
    if _is_union(hint):
        args = typing.get_args(hint)
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
        # Non-text targets first, so "3" becomes 3 for int | str.
        refused_word = None
        for arg in sorted(args, key=lambda a: a is str):
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as err:
                refused_word = err if vocabulary(arg) else refused_word
        raise refused_word or ConfigError(f"{where}: expected {describe(hint)}, got {value!r}")
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value in allowed:
            return value
        if isinstance(value, str):
            for a in allowed:
                if not isinstance(a, str) and str(a).lower() == value.strip().lower():
                    return a
        raise ConfigError(f"{where}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    if hint is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        raise ConfigError(f"{where}: expected None, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, str):
            value = _parse_text(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, str):
            value = _parse_text(value)
            if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "-inf", "nan"):
                value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    if origin in (list, tuple, Sequence):
        if isinstance(value, str):
            value = _parse_text(value)
            if isinstance(value, (str, int, float)):
                value = [v.strip() for v in str(value).split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if isinstance(value, str) and callable(getattr(hint, "parse", None)):
            try:
                return hint.parse(value)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{where}: {err}") from err
        return from_dict(hint, value, where)
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise ConfigError(f"{where}: expected {describe(hint)}, got {value!r}")
    return value


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_default(cls: type, name: str) -> Any:
    """The default that dataclass ``cls`` declares for field ``name`` (its factory called), or
    ``dataclasses.MISSING`` for a required field."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise ConfigError(f"{cls.__name__}: no field {name!r}")
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _section(value: Any, default: Any) -> bool:
    """Whether ``value`` (a mapping, or None for an empty YAML section) updates the dataclass
    instance ``default`` rather than replacing it."""
    return (value is None or isinstance(value, Mapping)) and dataclasses.is_dataclass(default) \
        and not isinstance(default, type)


def flat_keys(**keys: str) -> dict[str, dict[str, str]]:
    """Field metadata writing a nested dataclass field flat, as keys of its parent: with
    ``field(metadata=flat_keys(mixing="name", mixing_depth="depth"))``, ``mixing: acdc`` and
    ``mixing_depth: 2`` are the field's ``name`` and ``depth``.  The field's own key may also hold
    the whole value (its text form, split by the class's ``text_fields`` where it has one, or a
    mapping), which the other keys then update; the field is checked once, when it is made.  It keeps the
    flat ``layer`` / ``depth`` / ``options`` layout of configuration files for a field that holds
    one :class:`~structlayers.registry.LayerSpec`."""
    return {_FLAT_KEYS: dict(keys)}


_FLAT_KEYS = "structlayers.flat_keys"


def _fold_flat_keys(cls: type, values: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """``values`` with the flat keys of ``cls``'s fields (:func:`flat_keys`) gathered into one
    mapping for their field (a partial update of the field's current value, see :func:`replace_fields`)."""
    for f in dataclasses.fields(cls):
        keys = f.metadata.get(_FLAT_KEYS, {})
        if not any(key in values for key in keys):
            continue
        values = dict(values)
        own, hint = values.pop(f.name, {}), field_types(cls)[f.name]
        if isinstance(own, str) and callable(getattr(hint, "text_fields", None)):
            try:  # the text form's fields, checked once, with the flat keys, when the field is made
                own = hint.text_fields(own)
            except ValueError as err:
                raise ConfigError(f"{where}.{f.name}: {err}") from err
        elif not isinstance(own, Mapping):
            own = to_dict(coerce(own, hint, f"{where}.{f.name}"))
        parts = {inner: values.pop(outer) for outer, inner in keys.items() if outer != f.name and outer in values}
        values[f.name] = {**own, **parts}
    return values


def _fields_from(cls: type, base: Any, values: Any, where: str) -> dict[str, Any]:
    """Checked keyword arguments for ``cls`` from ``values``; a mapping given for a field whose
    value in ``base`` (an instance, or the class's declared defaults) is a dataclass updates that
    value key by key, so unspecified keys keep the default declared for the section."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    values = _fold_flat_keys(cls, values, where)
    hints = field_types(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                          f"allowed: {', '.join(sorted(hints))}")
    kwargs = {}
    for key, value in values.items():
        current = getattr(base, key) if not isinstance(base, type) else field_default(cls, key)
        if _section(value, current):
            kwargs[key] = replace_fields(current, value or {}, f"{where}.{key}")
        else:
            kwargs[key] = coerce(value, hints[key], f"{where}.{key}")
    return kwargs


def from_dict(cls: type[T], values: Any, where: str | None = None) -> T:
    """Dataclass ``cls`` from a mapping; missing keys keep their defaults (a nested section given
    in part keeps the defaults ``cls`` declares for the rest of it), unknown keys and ill-typed
    values raise :class:`ConfigError` naming the key (``where`` prefixes the names)."""
    where = where or cls.__name__
    kwargs = _fields_from(cls, cls, values, where)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def to_dict(config: Any) -> Any:
    """Plain data (for YAML / JSON) from a dataclass, recursively; paths become strings and tuples lists,
    fields declared with :func:`flat_keys` are written flat."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        out = {}
        for f in dataclasses.fields(config):
            value, keys = to_dict(getattr(config, f.name)), f.metadata.get(_FLAT_KEYS)
            out.update({outer: value[inner] for outer, inner in keys.items()} if keys else {f.name: value})
        return out
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, Path):
        return str(config)
    return config


def replace_fields(config: T, changes: Mapping[str, Any], where: str | None = None) -> T:
    """A copy of dataclass ``config`` with ``changes``: dotted keys (``"optim.lr"``) or nested
    mappings reach into nested dataclasses, keeping their other values; each value is checked
    like :func:`from_dict` does."""
    where = where or type(config).__name__
    if not isinstance(changes, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(changes).__name__}")
    grouped: dict[str, Any] = {}
    for key, value in changes.items():
        head, dot, rest = str(key).partition(".")
        if dot:
            section = grouped.setdefault(head, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{where}: {head!r} is set both as a whole and by {key!r}")
            section[rest] = value
        elif isinstance(grouped.get(key), dict) and isinstance(value, Mapping):
            grouped[key].update(value)
        else:
            grouped[key] = dict(value) if isinstance(value, Mapping) else value
    kwargs = _fields_from(type(config), config, grouped, where)
    try:
        return dataclasses.replace(config, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err
