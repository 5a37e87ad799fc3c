"""The ``atompaint`` command line; subcommands live one per module in :mod:`atompaint.cli.commands`.

Flag words follow :mod:`structlayers.clikit`: ``--out`` (main output file), ``--out-dir`` (run
folder), ``--json PATH`` (``-``: standard output), ``--plot PATH``, ``--no-progress``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from structlayers.clikit import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    description = "Protein structures as 3D images: index, voxelize, count models, train."
    # escnn says on import that the optional py3nj is missing; it then computes Clebsch-Gordan
    # coefficients numerically, as the Makefile's install intends: not news to a command's user.
    warnings.filterwarnings("ignore", message=".*py3nj.*", category=UserWarning)
    return run_cli("atompaint.cli.commands", "atompaint", description, argv)


if __name__ == "__main__":
    sys.exit(main())
