"""The approximation study's README claims come from its records: the generated blocks (tables and
findings) are what ``experiments/approx/tables.py`` prints from the JSON files, the records' verdicts
follow the current rule, and every error, MSE or rate quoted in the prose
(``experiments/approx/README.md``, the approximation sections of the documentation's results page
and the top-level README's approximation rows) appears in what ``tables.py`` renders from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from structlayers.lab.approx.stats import LEVEL_TEXT, RULE

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "experiments" / "approx"
RESULTS_PAGE = ROOT / "docs" / "guide" / "results.md"
#: Quoted results: decimals with 2-4 places (errors, MSEs, ratios); plain counts are not checked.
NUMBER = re.compile(r"(?<![\w.])\d+\.\d{2,4}(?![\d])")


@pytest.fixture(scope="module")
def rendered(tables) -> str:
    return tables.render("all")


def _missing(text: str, rendered: str) -> list[str]:
    return sorted({n for n in NUMBER.findall(text) if n not in rendered})


def test_generated_blocks_are_current(tables, rendered: str) -> None:
    """The Gaussian table, the families tables, the findings and the data-aware tables of the README
    are what ``tables.py`` renders from the records now."""
    readme = (STUDY / "README.md").read_text()
    for begin, end in tables.MARKS:
        assert tables.generated_block(readme, begin, end) == tables.generated_block(rendered, begin, end), (
            f"{begin}: rerun `python experiments/approx/tables.py rederive`")


def test_recorded_rows_carry_the_current_verdicts(tables) -> None:
    """Every record whose rows carry verdicts was derived with the current rule: its verdicts are
    what the rule says of its runs (``tables.py rederive`` re-derives them)."""
    records = tables.verdict_records()
    assert {p.name for p in records} >= {"gaussian_acdc_lbfgs.json", "families_gaussian.json"}
    for path in records:
        data = json.loads(path.read_text())
        assert data.get("verdict_rule") == RULE, f"{path.name}: rerun `python experiments/approx/tables.py rederive`"
        assert {r["config"]: r["beats_svd"] for r in data["rows"]} == tables.t_verdicts(data), path.name


def test_the_prose_names_the_rule_in_the_code() -> None:
    """The study README and the approximation guide state the verdicts' level that the code uses."""
    for path in (STUDY / "README.md", ROOT / "docs" / "guide" / "approximation.md"):
        assert f"Student-t {LEVEL_TEXT} interval" in path.read_text(), path.name


def test_every_quoted_number_in_the_study_readme_is_in_the_records(rendered: str) -> None:
    assert _missing((STUDY / "README.md").read_text(), rendered) == []


def test_results_page_approximation_sections_are_in_the_records(rendered: str) -> None:
    sections = [s for s in RESULTS_PAGE.read_text().split("\n## ")[1:] if "experiments/approx/" in s]
    assert len(sections) == 4, "the results page lost its approximation sections"
    assert _missing("\n".join(sections), rendered) == []


def test_top_level_readme_approximation_rows_are_in_the_records(rendered: str) -> None:
    lines = [line for line in (ROOT / "README.md").read_text().splitlines()
             if "experiments/approx/" in line and line.startswith("|")]
    assert lines, "the top-level README lost its approximation row"
    assert _missing("\n".join(lines), rendered) == []


def test_the_check_catches_a_number_that_is_not_recorded(rendered: str) -> None:
    assert _missing("ACDC K=8 reaches 0.1234 on Gaussian targets", rendered) == ["0.1234"]


def test_starts_lists_what_the_projection_start_lowered_and_the_verdicts_it_changed(tables) -> None:
    """A configuration the projection start lowered past the SVD is listed with both means and its
    verdict change; one it left alone is not."""
    svd = [0.50, 0.52, 0.51]
    runs = ([{"job": 0, "relative_error": e, "random_error": r, "svd_error": s}
             for e, r, s in zip([0.40, 0.41, 0.42], [0.50, 0.53, 0.49], svd)]
            + [{"job": 1, "relative_error": e, "random_error": e, "svd_error": s}
               for e, s in zip([0.60, 0.61, 0.62], svd)])
    rows = [{"config": "lowered", "rel_error_mean": 0.41, "random_error_mean": 0.507, "from_projection": 3,
             "seeds": 3},
            {"config": "alone", "rel_error_mean": 0.61, "random_error_mean": 0.61, "from_projection": 0,
             "seeds": 3}]
    data = {"jobs": [{"label": "lowered"}, {"label": "alone"}], "runs": runs, "rows": rows}
    assert tables.t_verdicts(data, "random_error") == {"lowered": "tie", "alone": "no"}
    text = tables.starts(data)
    assert "lowered 0.507 -> 0.410 (3/3)" in text and "lowered tie -> yes" in text
    assert "alone 0.6" not in text and "(of 2 configurations)" in text
