"""The ``atompaint`` command line; subcommands live one per module in :mod:`atompaint.cli.commands`.

Flag words follow :mod:`structlayers.clikit`: ``--out`` (main output file), ``--out-dir`` (run
folder), ``--json PATH`` (``-``: standard output), ``--plot PATH``, ``--no-progress``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from structlayers.clikit import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    description = "Protein structures as 3D images: index, voxelize, count models, train."
    return run_cli("atompaint.cli.commands", "atompaint", description, argv)


if __name__ == "__main__":
    sys.exit(main())
