"""A griffe extension that turns the reST markup of our docstrings into Markdown for mkdocstrings.

``:class:`~pkg.Name``` and the other roles become code spans (``Name``, the last part where the
target starts with ``~``), ``>>>`` examples become fenced ``pycon`` blocks, and a paragraph ending in
``::`` ends in ``:`` (the indented block after it is a Markdown code block already).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`<]*?)\s*(?:<([^`>]*)>)?`")


def _role(match: re.Match) -> str:
    tilde, text, target = match.groups()
    if target is None and tilde:
        text = text.rsplit(".", 1)[-1]
    return f"`{text.strip()}`"


def _fence_examples(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.lstrip().startswith(">>>"):
            out.append(line[:-1] if line.endswith("::") and not line.endswith(":::") else line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        block = []
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
            block.append(lines[i][len(indent):])
            i += 1
        out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
    return "\n".join(out)


class RestRoles(griffe.Extension):
    """Rewrite each docstring once, before mkdocstrings parses its sections."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _fence_examples(ROLE.sub(_role, obj.docstring.value))
