"""The Python snippets of the documentation's "Use with other tools" page run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "tools.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_its_snippets() -> None:
    assert len(snippets()) == 4


@pytest.mark.parametrize("index", range(4))
def test_snippet_runs(index: int, tmp_path) -> None:
    code = snippets()[index]
    if "onnxruntime" in code:
        pytest.importorskip("onnxruntime")
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the export snippet writes its ONNX file here
    try:
        exec(compile(code, f"tools.md snippet {index}", "exec"), {})
    finally:
        os.chdir(cwd)
