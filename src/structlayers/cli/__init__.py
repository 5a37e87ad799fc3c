"""The ``structlayers`` command line: one entry point, one module per subcommand
(:mod:`structlayers.cli.commands`), built with :mod:`structlayers.clikit`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from structlayers.clikit import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    description = "Structured efficient linear layers: list, fit, count, benchmark and train."
    return run_cli("structlayers.cli.commands", "structlayers", description, argv)


if __name__ == "__main__":
    sys.exit(main())
