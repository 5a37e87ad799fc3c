"""Fault probes of command-line arguments at and past their limits: thread counts, target files of
NaN / inf / zeros / not torch, a fit whose Jacobian cannot fit, budgets nothing fits, index files
that are not SQLite, voxel sizes whose atoms span billions of voxels, an empty centre, a plot
name without a type, labels of parts a model does not have, and a projection without weights.
Each one ends in one clear error line or the right result, never a traceback or a silent value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.faults.probes import CLI, error_line

DATA = Path(__file__).parents[1] / "atompaint" / "data"
REPO = Path(__file__).parents[2]
APPROX = ("approx", "--n", "8", "--steps", "2", "--seeds", "1", "--no-progress", "--no-timing")

pytestmark = pytest.mark.filterwarnings("ignore:.*atoms have no element column")


def test_bench_threads_zero_is_refused_before_torch_sees_it(cli: CLI) -> None:
    threads = torch.get_num_threads()
    code, _, err = cli("bench", "--threads", "0", "--layers", "acdc", "--sizes", "8")
    assert code == 2 and "--threads must be at least 1, got 0" in error_line(err)
    assert torch.get_num_threads() == threads


def _target(tmp_path: Path, value: float | None) -> Path:
    path = tmp_path / "t.pt"
    weight = torch.randn(8, 8)
    if value is not None:
        weight[2, 3] = value
    torch.save(weight if value != 0 else torch.zeros(8, 8), path)
    return path


@pytest.mark.parametrize(("value", "message"), [
    (float("nan"), "has 1 NaN or infinite entries of 64"),
    (float("inf"), "has 1 NaN or infinite entries of 64"),
    (0.0, "is all zero: the relative error of a fit to it is undefined"),
])
def test_approx_targets_that_cannot_be_fitted(cli: CLI, tmp_path: Path, value: float, message: str) -> None:
    path = _target(tmp_path, value)
    code, out, err = cli(*APPROX, "--target", path)
    assert code == 2 and message in error_line(err) and out == ""


def test_approx_target_that_is_not_a_torch_file(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "t.pt").write_text("1 2\n3 4\n")
    code, _, err = cli(*APPROX, "--target", tmp_path / "t.pt")
    assert code == 2 and f"target file {tmp_path / 't.pt'} is not a torch file" in error_line(err)


def test_approx_of_a_good_target_file(cli: CLI, tmp_path: Path) -> None:
    code, _, err = cli(*APPROX, "--target", _target(tmp_path, None), "--json", tmp_path / "r.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["runs"]


def test_approx_trf_jacobian_beyond_the_memory_is_refused_up_front(cli: CLI) -> None:
    code, _, err = cli("approx", "--optimizer", "trf", "--n", "2048", "--steps", "1", "--seeds", "1",
                       "--no-progress", "--no-timing")
    line = error_line(err)
    assert code == 2 and "the trf Jacobian (" in line and " x 4096 parameters) needs about" in line


def test_approx_budgets_that_nothing_fits(cli: CLI) -> None:
    code, out, err = cli("approx", "--params-budget", "1", "--layer", "acdc", "--n", "16", "--no-progress")
    line = error_line(err)
    assert code == 2 and "no configuration fits the parameter budget(s) 1 for 16x16 targets" in line
    assert "acdc: no configuration within 1 parameters" in line and "interrupted" not in err and out == ""


@pytest.mark.parametrize("name", ["noext", "plot.txt"])
def test_approx_plot_without_a_plot_type(cli: CLI, tmp_path: Path, name: str) -> None:
    code, out, err = cli(*APPROX, "--plot", tmp_path / name)
    assert code == 2 and "give a file name ending in .png, .svg, .pdf" in error_line(err) and out == ""
    assert list(tmp_path.iterdir()) == []


def test_index_out_that_is_not_sqlite(atompaint: CLI, tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "2xcjA.pdb.gz").write_bytes((DATA / "2xcjA.pdb.gz").read_bytes())
    (tmp_path / "notes.db").write_text("my notes\n")
    code, _, err = atompaint("index", tmp_path / "s", "--out", tmp_path / "notes.db", "--no-progress")
    assert code == 2 and "notes.db exists and is not an SQLite database" in error_line(err)
    assert (tmp_path / "notes.db").read_text() == "my notes\n"


def test_voxelize_resolution_whose_atoms_span_billions_of_voxels(atompaint: CLI, tmp_path: Path) -> None:
    code, _, err = atompaint("voxelize", DATA / "2xcjA.pdb.gz", "--resolution", "1e-9", "--out", tmp_path / "i.npz")
    line = error_line(err)
    assert code == 2 and "whose atoms span 1000000001^3 voxels needs about" in line
    assert not (tmp_path / "i.npz").exists()


def test_voxelize_empty_center_is_not_the_centroid(atompaint: CLI, tmp_path: Path) -> None:
    code, _, err = atompaint("voxelize", DATA / "2xcjA.pdb.gz", "--center", "", "--out", tmp_path / "i.npz")
    assert code == 2 and "--center must be three comma-separated numbers X,Y,Z, not ''" in error_line(err)


def test_count_labels_no_tensor_product_where_the_encoder_has_none() -> None:
    from atompaint.encoders import EncoderConfig
    from atompaint.tasks.neighbor_loc.count import encoder_form

    shallow = EncoderConfig(architecture="shallow", tensor_product="clebsch-gordan")
    resnet = EncoderConfig(architecture="resnet", tensor_product="clebsch-gordan")
    assert "tensor product" not in encoder_form(shallow)
    assert encoder_form(resnet).endswith(" + CG tensor product")
