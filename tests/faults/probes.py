"""Helpers of the fault probes: a folder's exact contents and a command's one error line."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

#: ``cli(*argv) -> (exit status, stdout, stderr)``, the ``cli`` fixture.
CLI = Callable[..., tuple[int, str, str]]


def tree_digest(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def error_line(err: str) -> str:
    """The one ``error:`` line of a command's standard error (asserting there is exactly one and
    no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]
