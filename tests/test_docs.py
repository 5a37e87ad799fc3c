"""The README stays short and every relative link of the README and the documentation pages resolves
(``make docs`` checks the rest: ``mkdocs build --strict`` fails on broken links and references)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import structlayers
from structlayers.layers import init

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: An inline Markdown link or image ``[text](target)``; the target up to a space or ``)``.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def broken_links(page: Path) -> list[str]:
    """The relative link targets of ``page`` (outside code blocks) that name no existing file."""
    text = FENCE.sub("", page.read_text())
    broken = []
    for target in LINK.findall(text):
        path = target.split("#", 1)[0]
        if not path or re.match(r"[a-z][a-z0-9+.-]*:", path):  # an anchor on the page, or a URL
            continue
        if not (page.parent / path).exists():
            broken.append(target)
    return broken


def test_readme_is_under_150_lines() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) < 150


def test_every_relative_link_points_to_a_file() -> None:
    assert {str(p.relative_to(ROOT)): broken_links(p) for p in _pages() if broken_links(p)} == {}


def test_every_experiment_readme_is_a_docs_page() -> None:
    linked = {p.resolve() for p in (DOCS / "experiments").glob("*.md")}
    assert set((ROOT / "experiments").glob("*/README.md")) <= linked


def test_the_link_check_catches_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text("[a](there.md#part) [b](gone.md) [c](#top) [d](https://example.org)\n"
                    "```\n[e](in-code.md)\n```\n")
    assert broken_links(page) == ["gone.md"]


def test_readme_python_examples_run() -> None:
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(snippets) == 2
    for index, code in enumerate(snippets):
        exec(compile(code, f"README snippet {index}", "exec"), {})


def accepted_init_words() -> dict[str, set[str]]:
    """``{word: layers whose init option takes it}``, by building each layer with each word (a
    deprecated alias, which warns, does not count)."""
    accepted: dict[str, set[str]] = {}
    for name in structlayers.available():
        if not any(option.name == "init" for option in structlayers.options(name)):
            continue
        for word in init.INIT_WORDS:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                try:
                    structlayers.create(name, 16, 16, init=word)
                except (ValueError, DeprecationWarning):
                    continue
            accepted.setdefault(word, set()).add(name)
    return accepted


def init_table(text: str) -> dict[str, tuple[set[str], set[str]]]:
    """``{word: (layers, bold layers)}`` of the rows ``| `word` | what | layers |`` of a table (below
    its header)."""
    rows = re.findall(r"^\| `(\w+)` +\|.*\| ([^|]*) \|$", text.split("\n|---", 1)[-1], flags=re.M)
    return {word: (set(re.findall(r"[a-z_]+", layers)), set(re.findall(r"\*\*([a-z_]+)\*\*", layers)))
            for word, layers in rows}


def test_the_init_table_of_the_guide_is_the_code_s_vocabulary() -> None:
    """The guide's table lists every ``init`` word, the layers taking it and their defaults."""
    section = (DOCS / "guide" / "layers.md").read_text().split("## The `init` words", 1)[1].split("\n## ", 1)[0]
    table = init_table(section)
    assert list(table) == list(init.INIT_WORDS)
    assert {word: layers for word, (layers, _) in table.items()} == accepted_init_words()
    defaults = {name: next(o.default for o in structlayers.options(name) if o.name == "init")
                for layers in accepted_init_words().values() for name in layers}
    assert {(name, word) for word, (_, bold) in table.items() for name in bold} == \
        {(name, word) for name, word in defaults.items()}


def test_the_init_docstring_table_lists_the_vocabulary() -> None:
    assert re.findall(r"^\| `(\w+)` ", init.__doc__, flags=re.M) == list(init.INIT_WORDS)


def documented_modules() -> tuple[set[str], set[str]]:
    """The modules the API pages render (``::: name``) and those rendered with their submodules."""
    named, with_submodules = set(), set()
    for page in (DOCS / "api").glob("*.md"):
        for name, options in re.findall(r"^::: ([\w.]+)\n((?:    .*\n)*)", page.read_text(), flags=re.M):
            named.add(name)
            if "show_submodules: true" in options:
                with_submodules.add(name)
    return named, with_submodules


def test_every_module_with_a_public_api_has_a_page() -> None:
    """A module or package that declares ``__all__`` is rendered by an API page, itself or through an
    ancestor shown with its submodules (the command lines are documented by ``--help``)."""
    named, with_submodules = documented_modules()
    missing = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        if "__all__ =" not in path.read_text():
            continue
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if ".cli" in module or any(part.startswith("_") for part in module.split(".")):
            continue
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        if module not in named and not ancestors & with_submodules:
            missing.append(module)
    assert missing == []
