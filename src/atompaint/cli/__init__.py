"""The ``atompaint`` command line; subcommands live one per module in :mod:`atompaint.cli.commands`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from structlayers.cli import build_parser, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        "atompaint.cli.commands",
        "atompaint",
        "Protein structures as 3D images: index, voxelize, count models, train.",
    )
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
