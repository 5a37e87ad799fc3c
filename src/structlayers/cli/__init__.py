"""The ``structlayers`` command line: one entry point, one module per subcommand.

Each module in :mod:`structlayers.cli.commands` defines ``NAME`` (its own module name), ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; they are discovered here, so adding a subcommand
means adding a file.  Only the module of the subcommand being run is imported (``--help`` imports
them all), so a light command never pays for heavy imports of another.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence


def build_parser(package: str, prog: str, description: str, only: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one subcommand per module of ``package`` (or just ``only``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    for name in [only] if only in names else names:
        module = importlib.import_module(f"{package}.{name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def run_cli(package: str, prog: str, description: str, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen subcommand; user errors exit with status 2 and a message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(package, prog, description, only=argv[0].replace("-", "_") if argv else None)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    description = "Structured efficient linear layers: list, fit, count, benchmark and train."
    return run_cli("structlayers.cli.commands", "structlayers", description, argv)


if __name__ == "__main__":
    sys.exit(main())
