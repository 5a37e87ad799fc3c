"""Origin selection and the SQLite origin index: contents, resumability, sampling, errors, CLI."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from atompaint.cli import main as cli_main
from atompaint.origins import (
    AtomDensity,
    BuildInterrupted,
    IndexBusyError,
    OriginIndex,
    OriginParams,
    OriginSampler,
    build_index,
    find_structures,
    select_origins,
)
from atompaint.structures import AtomTable, load

DATA = Path(__file__).parent / "data"
NAMES = ["2xdgA", "2xcjA", "2cviA"]


@pytest.fixture
def structure_dir(tmp_path: Path) -> Path:
    d = tmp_path / "structures"
    d.mkdir()
    for name in NAMES:
        shutil.copy(DATA / f"{name}.pdb.gz", d)
    return d


def test_select_origins_matches_brute_force_weighted_counts() -> None:
    """The count is the occupancy-weighted number of atoms within the radius, the atom itself included."""
    grid = np.stack(np.meshgrid(*[np.arange(5) * 1.5] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    elements = np.where(np.arange(len(grid)) % 4 == 0, "N", "C")
    occupancy = np.where(np.arange(len(grid)) % 3 == 0, 0.5, 1.0)
    atoms = AtomTable.from_arrays(grid, elements, occupancy=occupancy)
    dist = np.linalg.norm(grid[:, None] - grid[None], axis=-1)
    for weighted in (True, False):
        params = OriginParams(radius_A=2.0, min_atoms=5.5, occupancy_weighted=weighted)
        coords, counts = select_origins(atoms, params)
        weights = occupancy if weighted else np.ones(len(grid))
        brute = ((dist <= 2.0) * weights[None]).sum(axis=1)
        np.testing.assert_array_equal(coords, grid[brute >= 5.5].astype(np.float32))
        np.testing.assert_allclose(counts, brute[brute >= 5.5])
        density = AtomDensity(atoms, params)
        points = grid[::7] + 0.4
        np.testing.assert_allclose(density.counts(points), [density.count(p) for p in points])
        brute_points = ((np.linalg.norm(points[:, None] - grid[None], axis=-1) <= 2.0) * weights[None]).sum(axis=1)
        np.testing.assert_allclose(density.counts(points), brute_points)
    only_n, _ = select_origins(atoms, OriginParams(radius_A=2.0, min_atoms=5, elements=("n",)))
    assert 0 < len(only_n) < len(select_origins(atoms, OriginParams(radius_A=2.0, min_atoms=5))[0])


def test_half_occupied_alternates_count_once() -> None:
    """Two half-occupied conformations of an atom weigh as one atom, and a sum of occupancies such as
    0.33 + 0.67 passes a threshold of 1 despite float rounding."""
    atoms = AtomTable.from_arrays(np.array([[0, 0, 0], [0.3, 0, 0], [0, 0.3, 0]]), ["C", "C", "C"],
                                  occupancy=[1.0, 0.33, 0.67])
    weighted = AtomDensity(atoms, OriginParams(radius_A=1.0, min_atoms=2))
    assert weighted.count(np.zeros(3)) == pytest.approx(2.0)
    assert weighted.is_dense(weighted.count(np.array([0.15, 0.15, 0.0])))
    assert len(select_origins(atoms, OriginParams(radius_A=1.0, min_atoms=2.01))[0]) == 0
    unweighted = AtomDensity(atoms, OriginParams(radius_A=1.0, min_atoms=2, occupancy_weighted=False))
    assert unweighted.count(np.zeros(3)) == 3.0
    assert AtomDensity(atoms.select(np.zeros(3, bool))).count(np.zeros(3)) == 0.0


def test_default_criterion_is_the_upstream_one() -> None:
    """25 heavy atoms within 5 A, occupancy weighted, the origin included (upstream atompaint)."""
    assert (OriginParams().radius_A, OriginParams().min_atoms, OriginParams().occupancy_weighted) == (5.0, 25.0, True)
    # 24 other atoms on a 3 A shell around an atom: 25 with the atom itself, so it is an origin.
    rng = np.random.default_rng(0)
    shell = rng.normal(size=(24, 3))
    shell = 3.0 * shell / np.linalg.norm(shell, axis=1, keepdims=True)
    atoms = AtomTable.from_arrays(np.vstack([np.zeros(3), shell]), ["C"] * 25)
    coords, counts = select_origins(atoms)
    assert len(coords) == 1 and counts[0] == 25.0 and np.allclose(coords[0], 0)
    assert len(select_origins(atoms.select(np.arange(24)))[0]) == 0


def test_hydrogens_and_waters_are_never_origins() -> None:
    atoms = AtomTable.from_arrays(
        np.zeros((4, 3)) + np.arange(4)[:, None] * 0.1, ["C", "H", "O", "C"],
        entity_type=["polymer"] * 2 + ["water", "polymer"],
    )
    coords, counts = select_origins(atoms, OriginParams(radius_A=1.0, min_atoms=0))
    assert len(coords) == 2 and counts.tolist() == [2, 2]


def test_index_holds_the_origins_of_every_structure(structure_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "origins.db"
    params = OriginParams()
    report = build_index(find_structures(structure_dir), db, params)
    assert (report.added, report.skipped, report.failed, report.n_structures) == (3, 0, [], 3)

    index = OriginIndex(db)
    infos = index.structures()
    assert sorted(s.name for s in infos) == sorted(NAMES)
    assert index.params == params
    expected_first = 0
    for info in infos:
        atoms = load(info.path, drop_hydrogens=True, drop_waters=True, altloc="first")
        coords, counts = select_origins(atoms, params)
        assert info.first_origin == expected_first and info.n_origins == len(coords) > 0
        np.testing.assert_allclose(index.origins_of(info.id), coords, atol=1e-4)
        sid, xyz = index.origin(info.first_origin)
        assert sid == info.id
        np.testing.assert_allclose(xyz, coords[0], atol=1e-4)
        expected_first += info.n_origins
    assert len(index) == report.n_origins == expected_first
    with pytest.raises(KeyError, match="no origin with id"):
        index.origin(len(index))


def test_build_is_resumable_and_reports_unreadable_files(structure_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "origins.db"
    paths = find_structures(structure_dir)
    first = build_index(paths[:1], db)
    assert first.added == 1
    (structure_dir / "broken.cif").write_text("data_broken\n_cell.length_a 1\n")
    with pytest.warns(UserWarning, match="broken.cif"):
        second = build_index(find_structures(structure_dir), db)
    assert (second.added, second.skipped, len(second.failed)) == (2, 1, 1)
    assert [Path(p).name for p, _ in OriginIndex(db).failures()] == ["broken.cif"]
    ids = [(s.first_origin, s.n_origins) for s in OriginIndex(db).structures()]
    assert all(a + n == b for (a, n), (b, _) in zip(ids, ids[1:]))  # contiguous ids across resumes
    # A file that is readable on a later build is indexed and its failure record cleared.
    (structure_dir / "broken.cif").write_bytes(gzip.decompress((DATA / "2xcjA.cif.gz").read_bytes()))
    third = build_index(find_structures(structure_dir), db)
    assert (third.added, third.failed, list(OriginIndex(db).failures())) == (1, [], [])
    with pytest.raises(ValueError, match="origin_params"):
        build_index(paths, db, OriginParams(radius_A=6.0))


def test_index_records_its_criterion_and_refuses_other_ones(structure_dir: Path, tmp_path: Path) -> None:
    """An index built with one criterion is never extended with, or read as, another."""
    db = tmp_path / "origins.db"
    old = OriginParams(min_atoms=21, occupancy_weighted=False)
    build_index(find_structures(structure_dir), db, old)
    assert OriginIndex(db).params == old
    for other in (OriginParams(), OriginParams(min_atoms=21), OriginParams(min_atoms=21.5, occupancy_weighted=False)):
        with pytest.raises(ValueError, match="origin_params"):
            build_index(find_structures(structure_dir), db, other)
    n_old = len(OriginIndex(db))
    build_index(find_structures(structure_dir), tmp_path / "new.db")
    assert len(OriginIndex(tmp_path / "new.db")) < n_old  # the stricter criterion keeps fewer origins
    with sqlite3.connect(db) as con:  # an index of an earlier format is refused with a clear message
        con.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    con.close()
    with pytest.raises(ValueError, match="format 1.*rebuild"):
        OriginIndex(db)


def test_paths_are_relative_to_the_index(structure_dir: Path, tmp_path: Path) -> None:
    build_index(find_structures(structure_dir), structure_dir / "origins.db")
    moved = tmp_path / "moved"
    shutil.move(str(structure_dir), moved)
    index = OriginIndex(moved / "origins.db")
    assert all(s.path.is_file() and s.path.parent == moved for s in index.structures())


def test_uniform_and_weighted_sampling(structure_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "origins.db"
    build_index(find_structures(structure_dir), db)
    index = OriginIndex(db)
    infos = index.structures()
    rng = np.random.default_rng(0)

    sampler = OriginSampler(index)
    assert len(sampler) == len(index)
    draws = [sampler.sample(rng) for _ in range(3000)]
    seen = np.bincount([sid for _, sid, _ in draws], minlength=max(s.id for s in infos) + 1)
    for info in infos:  # uniform over origins: structures in proportion to their origin counts
        assert seen[info.id] / 3000 == pytest.approx(info.n_origins / len(index), abs=0.04)
    for origin_id, sid, xyz in draws[:20]:
        assert index.origin(origin_id) == (sid, pytest.approx(xyz))

    subset = OriginSampler(index, [infos[0].id], weighted=True)
    weighted = [subset.sample(rng) for _ in range(200)]
    assert {sid for _, sid, _ in weighted} == {infos[0].id}
    origin_ids = [oid for oid, _, _ in weighted]
    assert min(origin_ids) >= infos[0].first_origin and max(origin_ids) < infos[0].first_origin + infos[0].n_origins

    with pytest.raises(KeyError, match="unknown structure"):
        OriginSampler(index, [999])


def test_index_pickles_without_its_connection(structure_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "origins.db"
    build_index(find_structures(structure_dir), db)
    index = OriginIndex(db)
    index.origin(0)
    clone = pickle.loads(pickle.dumps(index))
    assert clone._con is None
    assert clone.origin(0)[0] == index.origin(0)[0]


def test_errors_for_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="structure directory"):
        find_structures(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="origin index"):
        OriginIndex(tmp_path / "missing.db")
    with pytest.raises(ValueError, match="min_atoms"):
        OriginParams(min_atoms=-1)


def test_cli_index(structure_dir: Path, tmp_path: Path, capsys) -> None:
    (structure_dir / "empty.pdb").write_text("")
    db = tmp_path / "cli.db"
    assert cli_main(["index", str(structure_dir), "--out", str(db), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "added 3" in captured.out and "unreadable 1" in captured.out
    assert "empty.pdb" in captured.err and "no atoms" in captured.err
    assert cli_main(["index", str(structure_dir), "--out", str(db), "--no-progress"]) == 0
    assert "already indexed 3" in capsys.readouterr().out
    assert cli_main(["index", str(tmp_path / "nothing"), "--out", str(db)]) == 2


def test_ctrl_c_during_a_build_keeps_whole_structures(structure_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import atompaint.origins.index as index_module

    calls = []

    def interrupted_load(path, **options):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return load(path, **options)

    monkeypatch.setattr(index_module, "load", interrupted_load)
    db = tmp_path / "origins.db"
    with pytest.raises(BuildInterrupted) as info:
        build_index(find_structures(structure_dir), db)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.report.added, info.value.report.n_structures) == (1, 1)
    monkeypatch.undo()
    report = build_index(find_structures(structure_dir), db)
    assert (report.added, report.skipped, report.n_structures) == (2, 1, 3)


def test_a_signal_inside_c_code_finishes_the_structure_then_stops(structure_dir: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # C code that calls back into Python can replace a KeyboardInterrupt raised there by an error of its
    # own (numpy's np.char turns it into a TypeError): the build takes Ctrl-C as a request instead.
    import atompaint.origins.index as index_module

    calls = []

    def select_inside_c_code(atoms, params):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            try:
                time.sleep(0.01)  # the handler runs here
            except KeyboardInterrupt:
                raise TypeError("result array type does not match underlying function") from None
        return select_origins(atoms, params)

    monkeypatch.setattr(index_module, "select_origins", select_inside_c_code)
    db = tmp_path / "origins.db"
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(BuildInterrupted) as info:
        build_index(find_structures(structure_dir), db)
    assert (info.value.report.added, info.value.report.n_structures) == (2, 2)  # the one in hand finished
    assert signal.getsignal(signal.SIGINT) is before


def test_a_held_lock_makes_a_second_build_wait_or_refuse(structure_dir: Path, tmp_path: Path) -> None:
    import fcntl

    db = tmp_path / "origins.db"
    with open(tmp_path / "origins.db.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("PID 4242 on elsewhere since today")
        holder.flush()
        with pytest.raises(IndexBusyError, match="being built by PID 4242 on elsewhere"):
            build_index(find_structures(structure_dir), db, wait=0)
        with pytest.warns(UserWarning, match="waiting for it"), pytest.raises(IndexBusyError):
            build_index(find_structures(structure_dir), db, wait=0.3)
    assert build_index(find_structures(structure_dir), db, wait=0).n_structures == 3
    assert (tmp_path / "origins.db.lock").read_text() == ""  # no stale holder named after the build


def test_an_index_without_file_records_gets_them(structure_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "origins.db"
    build_index(find_structures(structure_dir), db)
    con = sqlite3.connect(db)
    with con:
        con.execute("ALTER TABLE structures DROP COLUMN mtime_ns")
        con.execute("ALTER TABLE structures DROP COLUMN size")
    con.close()
    assert len(OriginIndex(db).structures()) == 3  # still readable
    report = build_index(find_structures(structure_dir), db)
    assert (report.added, report.skipped, report.reindexed) == (0, 3, 0)
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM structures WHERE mtime_ns IS NOT NULL AND size > 0").fetchone() == (3,)
    (structure_dir / "2xcjA.pdb.gz").write_bytes((DATA / "2cviA.pdb.gz").read_bytes())
    assert build_index(find_structures(structure_dir), db).reindexed == 1
    custom = tmp_path / "custom.db"
    assert cli_main(["index", str(structure_dir), "--out", str(custom), "--no-progress", "--min-atoms", "21",
                     "--no-occupancy-weighted", "--radius", "4.5"]) == 0
    assert OriginIndex(custom).params == OriginParams(radius_A=4.5, min_atoms=21, occupancy_weighted=False)
