"""Argument groups shared by several subcommands (kept out of ``cli.commands`` so that importing
them never imports another subcommand and its dependencies)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from structlayers.clikit import (
    PLOT_SUFFIXES,
    add_json,
    add_list,
    add_no_progress,
    add_plot,
    check_output_path,
    key_value,
    warn_deprecated,
)
from structlayers.registry import LayerSpec
from structlayers.surgery import DEFAULT_KINDS, INIT_ALIASES, INITS, REPLACE_FIT


def add_result_outputs(group: argparse._ActionsContainer, plot_help: str) -> None:
    """The outputs of an experiment (approx, bench) besides its table: ``--json`` (formerly
    ``--out``), ``--plot`` and ``--no-progress``."""
    add_json(group, old="--out")
    add_plot(group, plot_help)
    add_no_progress(group)


def check_result_outputs(args: argparse.Namespace) -> None:
    """Fail before any work starts if the ``--json`` or ``--plot`` of :func:`add_result_outputs`
    cannot be written."""
    check_output_path(args.json, "--json")
    check_output_path(args.plot, "--plot", PLOT_SUFFIXES)


def add_layer_options(group: argparse._ActionsContainer) -> None:
    """``-o KEY=VALUE``, repeatable: options of the chosen layer, checked against their types."""
    group.add_argument("--option", "-o", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="layer option, e.g. -o init=identity -o inner_shuffle=riffle -o bias=false")


def layer_spec(layer: str, args: argparse.Namespace, depth: int | None = None) -> LayerSpec:
    """The layer a flag names in its text form (``--replace acdc:depth=12:init=identity``), with
    ``depth`` (``--depth``) and the ``-o`` options over it, checked once (:class:`structlayers.LayerSpec`)."""
    text = LayerSpec.text_fields(layer)
    options = {**text["options"], **layer_options_text(args)}
    return LayerSpec(text["name"], text["depth"] if depth is None else depth, options)


def layer_options_text(args: argparse.Namespace) -> dict[str, str]:
    """The ``-o`` options of ``args``, as typed; the depth itself is ``--depth``, never ``-o``."""
    raw = dict(args.option)
    if "depth" in raw:
        raise ValueError(f"-o depth={raw['depth']}: give the stack depth with --depth")
    return raw


def add_replace_arguments(group: argparse._ActionsContainer, replace_help: str) -> None:
    """``--replace``, ``--targets``, ``--skip-first``, ``--skip-last`` and ``-o``: what
    :func:`structlayers.surgery.replace` swaps in, where, and with which layer options."""
    group.add_argument("--replace", metavar="LAYER", help=replace_help + " (NAME[:depth=N][:KEY=VALUE...])")
    add_list(group, "--targets", default=list(DEFAULT_KINDS), metavar="TARGET",
             help="kinds (linear, pointwise, separable, all) and/or module-name globs such as "
                  f"'layer3.*' (default: {' '.join(DEFAULT_KINDS)})")
    group.add_argument("--skip-first", type=int, default=0, help="keep the model's first N layers dense")
    group.add_argument("--skip-last", type=int, default=0, help="keep the model's last N layers dense")
    add_layer_options(group)


class _InitWord(argparse.Action):
    """Stores an ``--init`` word; a deprecated one (:data:`~structlayers.surgery.INIT_ALIASES`) warns
    and is replaced by its word."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values in INIT_ALIASES:
            warn_deprecated(parser, f"{option_string} {values}", f"{option_string} {INIT_ALIASES[values]}")
            values = INIT_ALIASES[values]
        setattr(namespace, self.dest, values)


def add_init_arguments(group: argparse._ActionsContainer) -> None:
    """``--init scratch|project|fit`` (how replacements start, ``init_from`` of
    :func:`structlayers.replace`; ``random`` is a deprecated alias of ``scratch``) and ``--weights``
    (trained weights to load into the model before surgery)."""
    group.add_argument("--init", choices=[*INITS, *INIT_ALIASES], default=INITS[0], action=_InitWord,
                       metavar="{" + ",".join(INITS) + "}",
                       help="replacements start from their own initialisation (scratch), the closed-form projection "
                            f"of the replaced weights, or that projection fitted iteratively (default: {INITS[0]})")
    group.add_argument("--fit-steps", type=int, default=REPLACE_FIT.steps,
                       help=f"with --init fit: L-BFGS iterations per layer (default {REPLACE_FIT.steps})")
    group.add_argument("--weights", type=Path, metavar="PATH",
                       help="a state_dict (.pt) or Lightning checkpoint (.ckpt) of the model to load before replacing")


def init_options(args: argparse.Namespace) -> dict[str, Any]:
    """``init_from`` and ``fit`` keyword arguments of :func:`structlayers.replace` from ``args``."""
    return {"init_from": args.init, "fit": dataclasses.replace(REPLACE_FIT, steps=args.fit_steps)}


def add_surgery_arguments(p: argparse.ArgumentParser, replace_help: str) -> None:
    """The model (built-in or zoo name) and everything :func:`structlayers.replace` needs: the layer
    and where it goes (:func:`add_replace_arguments`), ``--depth``, the initialisation
    (:func:`add_init_arguments`) and the model's constructor options."""
    from structlayers.lab.models import model_name

    p.add_argument("model", type=model_name, help="built-in model, timm:<name> or torchvision:<name> (random weights)")
    add_replace_arguments(p, replace_help)
    p.add_argument("--depth", type=int, help="with --replace: a stack of DEPTH factors of LAYER")
    add_init_arguments(p)
    add_model_options(p)


def add_model_options(group: argparse._ActionsContainer) -> None:
    """``-m KEY=VALUE``, repeatable: constructor arguments of a built-in model."""
    group.add_argument("--model-option", "-m", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="model constructor argument, e.g. -m width=16")
