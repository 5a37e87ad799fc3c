"""Fault probes of atompaint: structure files that are empty, truncated or written by MD programs;
the origin index under concurrent writers, Ctrl-C and changed files; images that come out empty;
sizes, configs and devices that cannot be served.  Each probe ends in one clear error line, a
warning, or preserved data -- never a traceback, a partial structure or a silent wrong value."""

from __future__ import annotations

import gzip
import logging
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from atompaint.structures import StructureError, load

DATA = Path(__file__).parents[1] / "atompaint" / "data"
CHAINS = ["2xcjA", "2cviA", "2xdgA"]
REPO = Path(__file__).parents[2]

AtompaintCLI = Callable[..., tuple[int, str, str]]

pytestmark = pytest.mark.filterwarnings("ignore:.*atoms have no element column")


def error_line(err: str) -> str:
    """The one ``error:`` line of a command's standard error (no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def structure_dir(root: Path, copies: int = 1) -> Path:
    folder = root / "structures"
    folder.mkdir()
    for i in range(copies):
        for name in CHAINS:
            shutil.copy(DATA / f"{name}.pdb.gz", folder / f"{name}_{i}.pdb.gz")
    return folder


def index_rows(db: Path) -> tuple[int, int, int, str]:
    """(structures, their summed origin counts, origin rows, integrity check) of an index."""
    con = sqlite3.connect(db)
    try:
        n, total = con.execute("SELECT COUNT(*), COALESCE(SUM(n_origins), 0) FROM structures").fetchone()
        return n, total, con.execute("SELECT COUNT(*) FROM origins").fetchone()[0], \
            con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def atompaint_process(*argv: object) -> subprocess.Popen:
    """``atompaint`` in a child process that takes Ctrl-C as a terminal would deliver it."""
    code = "import sys; from atompaint.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), cwd=REPO,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src"), "PYTHONWARNINGS": "ignore"},
    )


def wait_for_structures(db: Path, at_least: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                if con.execute("SELECT COUNT(*) FROM structures").fetchone()[0] >= at_least:
                    return
            finally:
                con.close()
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{db}: fewer than {at_least} structures after {timeout} s")


# -- structure files -------------------------------------------------------------------------------


def test_one_empty_cif_does_not_stop_the_index(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    folder = structure_dir(tmp_path)
    (folder / "empty.cif").write_text("")
    db = tmp_path / "origins.db"
    for _ in range(2):  # the rerun is not stuck either
        code, out, err = atompaint("index", folder, "--out", db, "--no-progress")
        assert code == 0, err
        assert "empty.cif: empty file" in err and "Traceback" not in err
    assert "3 structures" in out and "unreadable 1" in out
    with pytest.raises(StructureError, match="empty.cif"):
        load(folder / "empty.cif")


# Cut points at which the old loader returned part of 2xcjA (665 atoms): 1, 30, 98, 642 and all 665 atoms.
PARTIAL_CUTS = [128, 709, 1976, 11475, 11874]


@pytest.mark.parametrize("cut", PARTIAL_CUTS)
def test_a_truncated_gzip_is_an_error(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "2xcjA.pdb.gz"
    path.write_bytes((DATA / "2xcjA.pdb.gz").read_bytes()[:cut])
    with pytest.raises(StructureError, match=r"2xcjA.pdb.gz: corrupt or truncated gzip file"):
        load(path)


def test_the_index_stores_a_truncated_file_as_a_failure(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    folder = structure_dir(tmp_path)
    cut = folder / "cut.pdb.gz"
    cut.write_bytes((DATA / "2xcjA.pdb.gz").read_bytes()[:1976])
    code, out, err = atompaint("index", folder, "--out", tmp_path / "origins.db", "--no-progress")
    assert code == 0 and "unreadable 1" in out and "cut.pdb.gz: corrupt or truncated gzip" in err
    con = sqlite3.connect(tmp_path / "origins.db")
    assert con.execute("SELECT COUNT(*) FROM structures WHERE name = 'cut'").fetchone()[0] == 0
    assert con.execute("SELECT path FROM failures").fetchall() == [(str(cut),)]


def test_md_style_pdb_files_are_read_as_md_files() -> None:
    charmm = load(DATA / "adk_open_10res.pdb")  # CA was calcium, HG mercury, CD cadmium
    assert set(charmm.element) == {"C", "H", "N", "O", "S"}
    gromacs = load(DATA / "cobrotoxin_tip4p_cut.pdb.gz", drop_waters=True, drop_hydrogens=True)
    assert "SOL" not in gromacs.residue_name and "MW" not in gromacs.atom_name  # waters kept, MW imaged
    assert not gromacs.is_hydrogen.any() and "X" not in gromacs.element


def test_altloc_first_images_at_full_occupancy() -> None:
    split = load(DATA / "5PTI.cif.gz", altloc="all")
    sites = {(r, n) for r, n, a in zip(split.residue_id.tolist(), split.atom_name.tolist(), split.altloc) if a}
    first = load(DATA / "5PTI.cif.gz", altloc="first")
    names = zip(first.residue_id.tolist(), first.atom_name.tolist(), first.occupancy)
    kept = [o for r, n, o in names if (r, n) in sites]
    assert len(kept) == 17
    np.testing.assert_allclose(kept, 1.0)  # was 0.7 (GLU 7) and 0.65 (MET 52)


def test_binary_cif_is_readable() -> None:
    pytest.importorskip("biotite")
    atoms = load(DATA / "5PTI.bcif.gz")
    assert len(atoms) == len(load(DATA / "5PTI.cif.gz")) == 1104


# -- the origin index ------------------------------------------------------------------------------


def test_a_second_index_writer_is_told_who_holds_the_index(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    folder = structure_dir(tmp_path, copies=150)
    db = tmp_path / "origins.db"
    first = atompaint_process("index", folder, "--out", db, "--no-progress")
    try:
        wait_for_structures(db, 1, first)
        code, _, err = atompaint("index", folder, "--out", db, "--no-progress")
        assert code == 2
        assert f"the index is being built by PID {first.pid}" in error_line(err)
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    n, total, origins, ok = index_rows(db)
    assert (n, ok) == (450, "ok") and total == origins
    code, out, _ = atompaint("index", folder, "--out", db, "--no-progress")
    assert code == 0 and "already indexed 450" in out


def test_ctrl_c_leaves_a_consistent_index_and_says_how_to_resume(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    # Enough files that the build is still running when the signal lands, however loaded the machine.
    # One fresh-clone run saw a build exit 0 with every structure indexed after the signal: an attempt
    # that ends complete tested nothing, so it is repeated on a new index (at most 3 attempts).
    folder = structure_dir(tmp_path, copies=600)
    for attempt in range(3):
        db = tmp_path / f"origins{attempt}.db"
        build = atompaint_process("index", folder, "--out", db, "--no-progress")
        wait_for_structures(db, 2, build)
        build.send_signal(signal.SIGINT)
        _, err = build.communicate(timeout=120)
        if not (build.returncode == 0 and index_rows(db)[0] == 1800):
            break
    assert build.returncode == 130 and "Traceback" not in err, err
    assert "interrupted" in err and "Run the same command again to resume" in err
    assert f"atompaint index {folder} --out {db}" in err
    n, total, origins, ok = index_rows(db)
    assert ok == "ok" and 2 <= n < 1800 and total == origins  # whole structures only
    code, out, _ = atompaint("index", folder, "--out", db, "--no-progress")
    assert code == 0 and f"already indexed {n}" in out and "1800 structures" in out


def test_a_cached_index_follows_deleted_and_changed_files(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    folder = structure_dir(tmp_path)
    db = tmp_path / "origins.db"
    assert atompaint("index", folder, "--out", db, "--no-progress")[0] == 0
    (folder / "2cviA_0.pdb.gz").unlink()
    shutil.copy(DATA / "2xcjA.pdb.gz", folder / "2xdgA_0.pdb.gz")  # new content under an indexed name
    code, out, err = atompaint("index", folder, "--out", db, "--no-progress")
    assert code == 0, err
    assert "removed 1 deleted" in out and "re-indexed 1 changed" in out and "2 structures" in out
    con = sqlite3.connect(db)
    rows = dict(con.execute("SELECT name, n_atoms FROM structures").fetchall())
    assert rows == {"2xcjA_0": rows["2xcjA_0"], "2xdgA_0": rows["2xcjA_0"]}
    assert index_rows(db)[1] == index_rows(db)[2]


@pytest.mark.parametrize(("elements", "message"), [
    ("XX,,", "--elements 'XX,,' has an empty entry"),
    ("XX", "--elements: 'XX' not an element symbol"),
])
def test_origin_elements_that_select_nothing_are_errors(atompaint: AtompaintCLI, tmp_path: Path, elements: str,
                                                        message: str) -> None:
    folder = structure_dir(tmp_path)
    code, _, err = atompaint("index", folder, "--out", tmp_path / "o.db", "--elements", elements)
    assert code == 2 and message in error_line(err)
    assert not (tmp_path / "o.db").exists()


# -- images ----------------------------------------------------------------------------------------


def outlier_pdb(tmp_path: Path) -> Path:
    """The first 100 atoms of 2xcjA and one atom 17,000 A away."""
    lines = [line for line in gzip.decompress((DATA / "2xcjA.pdb.gz").read_bytes()).decode().splitlines()
             if line.startswith("ATOM")][:100]
    lines.append("HETATM 9999  O   HOH Z 999    9999.9999999.9999999.999  1.00 20.00           O")
    path = tmp_path / "outlier.pdb"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("where", "message"), [
    ("outlier", "the centre is the centroid of all atoms"),
    ("far", "the nearest imaged atom is"),
])
def test_an_empty_image_warns_and_strict_refuses_it(atompaint: AtompaintCLI, tmp_path: Path, where: str,
                                                    message: str) -> None:
    if where == "outlier":
        args: tuple = (outlier_pdb(tmp_path),)
    else:
        args = (DATA / "2xcjA.pdb.gz", "--center", "1000,0,0")
    code, _, err = atompaint("voxelize", *args, "--out", tmp_path / "image.npz")
    assert code == 0 and "warning: the image is empty" in err and message in err
    assert not np.load(tmp_path / "image.npz")["image"].any()
    code, _, err = atompaint("voxelize", *args, "--out", tmp_path / "strict.npz", "--strict")
    assert code == 2 and "the image is empty" in error_line(err) and not (tmp_path / "strict.npz").exists()


def test_channels_of_no_element_are_an_error(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    code, _, err = atompaint("voxelize", DATA / "2xcjA.pdb.gz", "--channels", "XX", "--out", tmp_path / "i.npz")
    assert code == 2 and "'XX' not an element symbol" in error_line(err)


def test_a_huge_length_is_refused_before_allocating(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    # 5 channels x 2000^3 voxels: 320 GB of float64, more than any machine this runs on.
    start = time.perf_counter()
    code, _, err = atompaint("voxelize", DATA / "2xcjA.pdb.gz", "--length", "2000", "--out", tmp_path / "i.npz")
    assert code == 2 and "--length 2000" in error_line(err) and "needs about" in err
    assert time.perf_counter() - start < 30


# -- training configs and devices ---------------------------------------------------------------------


def write_config(tmp_path: Path, structure_dir: str = "missing-structures") -> Path:
    text = (REPO / "experiments" / "neighbor_loc" / "sanity_dense.yaml").read_text()
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("../shared/data/pdb", str(tmp_path / structure_dir)))
    return path


def test_malformed_yaml_is_one_line_naming_file_and_line(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntask: neighbor-loc\nencoder: {width: 2\n")
    code, _, err = atompaint("train", "--config", path, "--out-dir", tmp_path / "runs")
    assert code == 2 and f"{path}:4:1: malformed YAML" in error_line(err)


def test_an_unwritable_run_folder_fails_before_any_work(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    code, _, err = atompaint("train", "--config", write_config(tmp_path),
                             "--out-dir", tmp_path / "a-file" / "runs")
    assert code == 2 and "run folder (--out-dir)" in error_line(err)  # not the missing structure folder


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_accelerator_without_a_gpu_is_a_clear_error(atompaint: AtompaintCLI, tmp_path: Path) -> None:
    logging.disable(logging.INFO)  # Lightning's "Seed set to 0" goes to a stream an earlier test captured
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code, _, err = atompaint("train", "--config", write_config(tmp_path),
                                     "--accelerator", "gpu", "--out-dir", tmp_path / "runs")
    finally:
        logging.disable(logging.NOTSET)
    assert code == 2 and "no CUDA GPU is available" in error_line(err)
