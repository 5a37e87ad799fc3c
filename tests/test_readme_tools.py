"""The Python snippets of the README's "Use with other tools" section run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list[str]:
    text = README.read_text()
    section = text.split("### Use with other tools", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_its_snippets() -> None:
    assert len(snippets()) == 4


@pytest.mark.parametrize("index", range(4))
def test_snippet_runs(index: int, tmp_path) -> None:
    code = snippets()[index]
    if "onnxruntime" in code:
        pytest.importorskip("onnxruntime")
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the export snippet writes its ONNX file here
    try:
        exec(compile(code, f"README snippet {index}", "exec"), {})
    finally:
        os.chdir(cwd)
