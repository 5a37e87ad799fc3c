"""Command-line building blocks shared by every CLI built on structlayers (``structlayers`` and
``atompaint``): subcommand discovery, the one vocabulary of flag words, deprecated spellings,
``KEY=VALUE`` options, and flags generated from configuration dataclasses so that each default is
declared once, in the component (argparse only; no experiment code is imported).

The flag words, the same in every command:

``--out PATH``      the command's main output file (an image, an index database);
``--out-dir DIR``   the folder of a run's outputs (logs, checkpoints, metrics, curves);
``--json PATH``     the results as JSON (``-`` writes them to standard output);
``--plot PATH``     a figure of the results (PNG, SVG or PDF by extension);
``--no-progress``   no progress bar;
``--batch-size N``  rows per batch (a list where a command sweeps them).

A list is its values separated by spaces (``--sizes 256 1024``); a comma list (``256,1024``) and a
repeated flag read the same (:func:`add_list`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import sys
import types
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from structlayers.configs import ConfigError, coerce, field_types

#: Exceptions that a subcommand raises for bad user input: printed as one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError, NotADirectoryError, IsADirectoryError,
               PermissionError)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already says it: a switch shows
    ``off``, an unset value ``unset``, a list its items as they are typed, a required option ``required``."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default" in text.lower():
            return text
        if action.required:
            return f"{text} (required)".replace("%", "%%").lstrip()
        return f"{text} (default: {default_text(action)})".replace("%", "%%").lstrip()


def default_text(action: argparse.Action) -> str:
    """An option's default as a user types it (see :class:`HelpFormatter`)."""
    default = action.default
    if action.nargs == 0 or isinstance(default, bool):
        return "on" if default else "off"
    if default is None or default == []:
        return "unset"
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default))
    return str(default)


def build_parser(package: str, prog: str, description: str, only: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one subcommand per module of ``package`` (or just ``only``).

    Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
    only the module of the subcommand being run is imported (``--help`` imports them all), so a
    light command never pays for another's heavy imports.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    for name in [only] if only in names else names:
        module = importlib.import_module(f"{package}.{name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def run_cli(package: str, prog: str, description: str, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen subcommand; user errors exit with status 2 and a message,
    Ctrl-C (where the command does not handle it itself) with status 130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(package, prog, description, only=argv[0].replace("-", "_") if argv else None)
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the subcommand's parser, so that the message names the command
        command = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))
        command.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130


def warn_deprecated(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Say (a ``FutureWarning``, and a line on standard error) that the spelling ``old`` is
    deprecated and ``new`` replaces it."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  FutureWarning, stacklevel=3)
    print(f"{parser.prog}: warning: {old} is deprecated; use {new}", file=sys.stderr)


class _DeprecatedFlag(argparse.Action):
    """Stores like the new flag, after a warning that names it."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        warn_deprecated(parser, str(option_string), self.new)
        setattr(namespace, self.dest, self.const if values is None and self.nargs == "?" else values)


def add_deprecated(container: argparse._ActionsContainer, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """Accept the old spelling ``old`` of flag ``new`` (same ``dest``), warning when it is used."""
    container.add_argument(old, dest=dest, action=_DeprecatedFlag, new=new, help=argparse.SUPPRESS,
                           default=argparse.SUPPRESS, **kwargs)


def add_out(container: argparse._ActionsContainer, help: str, required: bool = False) -> None:
    container.add_argument("--out", type=Path, required=required, metavar="PATH", help=help)


def add_out_dir(container: argparse._ActionsContainer, help: str, default: Path | None = None) -> None:
    container.add_argument("--out-dir", type=Path, default=default, metavar="DIR", help=help)
    add_deprecated(container, "--output-dir", "--out-dir", "out_dir", type=Path)


def add_json(container: argparse._ActionsContainer, help: str = "write the results as JSON ('-': standard output)",
             old: str | None = None) -> None:
    """``--json PATH``; ``old`` is an earlier spelling of it (e.g. ``--out``), kept with a warning."""
    container.add_argument("--json", type=Path, metavar="PATH", help=help)
    if old:
        add_deprecated(container, old, "--json PATH", "json", type=Path)


def add_plot(container: argparse._ActionsContainer, help: str, old: str | None = None) -> None:
    container.add_argument("--plot", type=Path, metavar="PATH", help=help)
    if old:
        add_deprecated(container, old, "--plot PATH", "plot", type=Path)


def add_resume_arguments(container: argparse._ActionsContainer, **resume: Any) -> None:
    """The flags of a training run's folder (:class:`structlayers.lightning.RunDirectory`): ``--resume``
    (keyword arguments replace its ``store_true`` action), ``--resume-from CKPT``, ``--override``
    and ``--overwrite``."""
    container.add_argument("--resume", **{"action": "store_true", **resume},
                           help="continue the run from the checkpoint that got furthest (by its recorded step)")
    container.add_argument("--resume-from", type=Path, metavar="CKPT",
                           help="continue the run from this checkpoint file")
    container.add_argument("--override", action="store_true",
                           help="on resume, apply configuration changes that a resumed run refuses (recorded in "
                                "history.jsonl; the original configuration is kept as config.original.json)")
    container.add_argument("--overwrite", action="store_true", help="replace the run that the run folder holds")


def add_no_progress(container: argparse._ActionsContainer) -> None:
    container.add_argument("--no-progress", action="store_true", help="no progress bar")


#: File types a ``--plot`` can be written as (matplotlib picks the format by the extension).
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_output_path(path: Path | None, what: str = "output", suffixes: Sequence[str] = ()) -> Path | None:
    """Fail before any work starts if ``path`` cannot be written: its folder must exist or be
    creatable, it must not be a folder, and the folder must be writable; with ``suffixes`` its
    extension must be one of them (e.g. :data:`PLOT_SUFFIXES`).  ``-`` (stdout) passes."""
    if path is None or str(path) == "-":
        return path
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file path")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{what} {path}: give a file name ending in {', '.join(suffixes)}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create the folder of {what} {path}: {err.strerror or err}") from None
    probe = parent / f".{path.name}.writable"
    try:
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"cannot write {what} {path}: {err.strerror or err}") from None
    return path


def check_output_dir(path: Path, what: str = "output folder") -> Path:
    """Fail before any work starts if folder ``path`` cannot be created or written to."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"cannot write {what} {path}: {err.strerror or err}") from None
    return path


def write_output(path: Path | None, text: str, what: str = "results") -> None:
    """Write ``text`` to ``path`` (``-``: standard output) and say where it went."""
    if path is None:
        return
    if str(path) == "-":
        print(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {what} to {path}", file=sys.stderr)


class _Flatten(argparse.Action):
    """Stores the items of every value (each a list, see :func:`list_items`) as one list; a flag
    given again adds its items (``--padding 2 --padding 4`` is ``--padding 2 4``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        earlier = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, earlier + [item for value in values for item in value])


def list_items(item: Callable[[str], Any] = str) -> Callable[[str], list[Any]]:
    """An argparse ``type`` reading one command-line word as the comma-separated items it holds."""

    def parse(text: str) -> list[Any]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected a value, got {text!r}")
        return [item(v) for v in values]

    parse.__name__ = getattr(item, "__name__", "value")  # argparse names the type in its error messages
    return parse


def add_list(container: argparse._ActionsContainer, *flags: str, item: Callable[[str], Any] = str,
             **kwargs: Any) -> None:
    """A list flag, in the one list syntax of both command lines: values separated by spaces
    (``--sizes 256 1024``), where a comma list (``--sizes 256,1024``) and the flag repeated
    (``--sizes 256 --sizes 1024``) read the same; each item is read by ``item``."""
    container.add_argument(*flags, nargs="+", type=list_items(item), action=_Flatten, **kwargs)


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` split at the first ``=``; the value stays text until it is checked against the
    option's declared type (:func:`structlayers.configs.coerce`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"options are KEY=VALUE, got {text!r}")
    return key.strip(), value


def _argparse_type(hint: Any, flag: str) -> tuple[Callable[[str], Any] | None, dict[str, Any]]:
    """``(type, extra add_argument kwargs)`` for a field annotation."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _argparse_type(rest[0], flag)
    if typing.get_origin(hint) is Literal:
        return None, {"choices": list(args)}
    if typing.get_origin(hint) in (list, tuple, Sequence):
        item = args[0] if args else str

        def parse_item(text: str) -> Any:
            try:
                return coerce(text, item, flag)
            except ConfigError as err:
                raise argparse.ArgumentTypeError(str(err)) from None

        return list_items(parse_item), {"nargs": "+", "action": _Flatten}

    def parse(text: str) -> Any:
        try:
            return coerce(text, hint, flag)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse, {}


def add_config_arguments(
    container: argparse._ActionsContainer,
    cls: type,
    *,
    only: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    flags: dict[str, str] | None = None,
    help: dict[str, str] | None = None,
    dest_prefix: str = "",
    overrides: bool = False,
) -> None:
    """One flag per field of dataclass ``cls`` (``--field-name``, or ``flags[name]``), typed by
    the field's annotation, with the dataclass's own default, so defaults are never restated.
    Booleans get ``--name`` / ``--no-name``; ``Literal`` fields get choices; lists take several values
    (:func:`add_list`'s syntax).
    ``dest`` is ``dest_prefix + name``; :func:`config_from_args` reads them back.

    ``overrides``: the flags change a config loaded from elsewhere (a YAML file), so a flag left out
    is ``None`` (keep the file's value) and the help shows the dataclass default instead of applying it;
    :func:`overrides_from_args` collects the ones given."""
    defaults = cls()
    hints = field_types(cls)
    flags, help = flags or {}, help or {}
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        flag = flags.get(f.name, "--" + f.name.replace("_", "-"))
        default = getattr(defaults, f.name)
        text = help.get(f.name, f.name.replace("_", " "))
        kwargs: dict[str, Any] = {"dest": dest_prefix + f.name, "default": None if overrides else default}
        hint = hints[f.name]
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["help"] = f"{text} (default: {'on' if default else 'off'})"
        else:
            parse, extra = _argparse_type(hint, flag)
            if parse is not None:
                kwargs["type"] = parse
            kwargs.update(extra)
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            kwargs["help"] = text if "default" in text.lower() else f"{text} (default: {_unset(shown)})"
            kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper() if "choices" not in extra else None
        container.add_argument(flag, **kwargs)


def _unset(value: Any) -> Any:
    return "unset" if value is None else value


def overrides_from_args(cls: type, args: argparse.Namespace, dest_prefix: str, key_prefix: str = "") -> dict[str, Any]:
    """``{key_prefix + field: value}`` for every flag of ``cls`` that :func:`add_config_arguments`
    (with ``overrides=True``) added and the command line set."""
    return {key_prefix + f.name: getattr(args, dest_prefix + f.name) for f in dataclasses.fields(cls)
            if getattr(args, dest_prefix + f.name, None) is not None}


def config_from_args(cls: type, args: argparse.Namespace, dest_prefix: str = "", **values: Any) -> Any:
    """Dataclass ``cls`` from the flags :func:`add_config_arguments` added (those present in
    ``args``), plus ``values`` for the fields set otherwise."""
    for f in dataclasses.fields(cls):
        dest = dest_prefix + f.name
        if f.name not in values and hasattr(args, dest):
            value = getattr(args, dest)
            values[f.name] = value
    return cls(**values)
