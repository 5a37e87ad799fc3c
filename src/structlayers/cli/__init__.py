"""The ``structlayers`` command line: one entry point, one module per subcommand.

Each module in :mod:`structlayers.cli.commands` defines ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; they are discovered here, so adding a subcommand means adding a file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence


def build_parser(package: str, prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one subcommand for every module of ``package``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen subcommand; user errors exit with status 2 and a message."""
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        "structlayers.cli.commands",
        "structlayers",
        "Structured efficient linear layers: list, fit, count, benchmark and train.",
    )
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
