"""``structlayers layers``: list the registered layer plugins and their options."""

from __future__ import annotations

import argparse
import inspect

from structlayers.registry import available, options
from structlayers.utils.report import format_table

NAME = "layers"
HELP = "list the registered layers (built-in and from plugins) with their options"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show only this layer")


def run(args: argparse.Namespace) -> int:
    layers = available()
    names = [args.name] if args.name else list(layers)
    for name in names:
        if name not in layers:
            raise ValueError(f"unknown layer {name!r}; available layers: {', '.join(layers)}")
    rows = []
    for name in names:
        cls = layers[name]
        doc = (inspect.getdoc(cls) or "").split("\n")[0]
        opts = ", ".join(f"{o.name}={o.default!r}" for o in options(name))
        rows.append((name, f"{cls.__module__}.{cls.__qualname__}", opts or "-"))
        if args.name:
            print(f"{name}: {doc}\n")
    print(format_table(("layer", "class", "options (defaults)"), rows, "lll"))
    if args.name:  # one layer: each option's type (a word-valued option: the words it takes)
        print("\n" + format_table(("option", "default", "type"),
                                  [(o.name, repr(o.default), o.annotation) for o in options(args.name)], "lll"))
    return 0
