"""Plain-text tables for the reports printed by the CLI and returned by the Python API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def human(n: float, unit: str = "", base: int = 1000) -> str:
    """Compact engineering notation: ``1234567 -> '1.23M'``; with a ``unit`` and ``base=1024``,
    binary prefixes (``human(3 << 30, "B", 1024) -> '3 GiB'``)."""
    prefixes = ("", "K", "M", "G", "T", "P")
    value, i = float(n), 0
    while abs(value) >= base and i < len(prefixes) - 1:
        value /= base
        i += 1
    if i == 0:
        text = f"{n:.4g}" if isinstance(n, float) else str(n)
    else:
        text = f"{value:.3g}"
    suffix = prefixes[i] + ("i" if base == 1024 and i else "") + unit
    return f"{text} {suffix}".rstrip() if unit else text + suffix


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A fixed-width table; ``align`` has one 'l' or 'r' per column (numbers right by default)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers)))
    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])
