"""The ``structlayers`` and ``atompaint`` command lines run in this process, for the fault probes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from structlayers.cli import main
from tests.faults.probes import CLI


def _runner(entry: Callable[[Sequence[str]], int], capsys: pytest.CaptureFixture[str]) -> CLI:
    def run(*argv: object) -> tuple[int, str, str]:
        capsys.readouterr()
        code = entry([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CLI:
    """``cli(*argv) -> (exit status, stdout, stderr)`` of ``structlayers``."""
    return _runner(main, capsys)


@pytest.fixture
def atompaint(capsys: pytest.CaptureFixture[str]) -> CLI:
    """``atompaint(*argv) -> (exit status, stdout, stderr)`` of ``atompaint``."""
    from atompaint.cli import main as atompaint_main

    return _runner(atompaint_main, capsys)
