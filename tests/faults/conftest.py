"""The ``structlayers`` command line run in this process, for the fault probes."""

from __future__ import annotations

import pytest

from structlayers.cli import main
from tests.faults.probes import CLI


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CLI:
    """``cli(*argv) -> (exit status, stdout, stderr)`` of ``structlayers``."""

    def run(*argv: object) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
