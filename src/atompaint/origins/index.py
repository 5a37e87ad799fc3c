"""The on-disk origin index (SQLite), built once per dataset and sampled in O(1) by each data worker.

Schema::

    meta(key, value)                      -- origin/loading parameters (JSON), format version
    structures(id, name, path, n_atoms, first_origin, n_origins, total_weight, mtime_ns, size)
    origins(id, structure_id, x, y, z, weight, cum_weight)
    failures(path, error)                 -- unreadable files, retried when the build is resumed

Origin ids are contiguous per structure (``first_origin .. first_origin + n_origins - 1``), so a uniform
draw over any set of structures is a draw of an integer plus one primary-key lookup; a worker holds
only a few small per-structure arrays, never the origins themselves.  ``weight`` is the origin's
weighted atom count (:class:`~atompaint.origins.select.AtomDensity`); weighted sampling draws a
structure by total weight and an origin through the ``cum_weight`` index.
``path`` is stored relative to the index file when possible, so a dataset directory can be moved with
its index.

A build keeps the index true to the files: ``mtime_ns`` and ``size`` of each structure file are
recorded, and a later build drops structures whose file is gone and re-indexes those whose file
changed.  One build at a time writes an index: a second one waits for (or, with ``wait=0``, refuses)
the lock ``<index>.lock``, whose content names the process holding it.  Each structure is committed
in one transaction, so an interrupted build leaves a consistent index that the next build resumes.

``meta`` records the density criterion (:class:`OriginParams`) and the loading options the
index was built with: a build with other parameters refuses to extend it, and readers
(:class:`OriginIndex`) expose them so a caller can check them against its own configuration.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from structlayers.utils.interrupt import StopRequest

from ..structures import StructureError, is_structure_file, load, structure_name
from .select import OriginParams, select_origins

#: Format 2: occupancy-weighted atom counts (``OriginParams.min_atoms``, the centre atom included).
FORMAT_VERSION = "2"

#: How structures are loaded for origin selection and imaging (recorded in the index).
LOAD_OPTIONS = {"drop_hydrogens": True, "drop_waters": True, "altloc": "first"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS structures (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    n_atoms INTEGER NOT NULL,
    first_origin INTEGER NOT NULL,
    n_origins INTEGER NOT NULL,
    total_weight REAL NOT NULL,
    mtime_ns INTEGER,
    size INTEGER
);
CREATE TABLE IF NOT EXISTS origins (
    id INTEGER PRIMARY KEY,
    structure_id INTEGER NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL,
    weight REAL NOT NULL,
    cum_weight REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS origins_by_weight ON origins (structure_id, cum_weight);
CREATE TABLE IF NOT EXISTS failures (path TEXT PRIMARY KEY, error TEXT NOT NULL);
"""


def find_structures(directory: str | os.PathLike[str]) -> list[Path]:
    """Structure files under ``directory`` (recursively), sorted by path."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"structure directory not found: {directory}")
    return sorted(p for p in directory.rglob("*") if p.is_file() and is_structure_file(p))


@dataclass
class BuildReport:
    """What :func:`build_index` did (so far, when it was interrupted)."""

    added: int
    skipped: int
    failed: list[tuple[str, str]]
    n_structures: int
    n_origins: int
    #: Structures dropped because their file is gone.
    removed: int = 0
    #: Structures re-indexed because their file changed (modification time or size).
    reindexed: int = 0


class IndexBusyError(ValueError):
    """Another process is building the same index."""


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`build_index`; ``report`` says what the (consistent) index holds."""

    def __init__(self, db_path: Path, report: BuildReport) -> None:
        super().__init__(f"{db_path}: build interrupted")
        self.db_path = db_path
        self.report = report


def build_index(
    paths: Iterable[str | os.PathLike[str]],
    db_path: str | os.PathLike[str],
    params: OriginParams = OriginParams(),
    *,
    progress: bool = False,
    wait: float | None = None,
) -> BuildReport:
    """Add the origins of every structure in ``paths`` to the index at ``db_path`` (created if absent).

    Resumable: structures already in the index are skipped, so an interrupted build continues where
    it stopped (each structure is committed on its own; Ctrl-C stops the build after the structure in hand, a
    second one at once, and raises :class:`BuildInterrupted`).
    Structures whose file was deleted are dropped, and those whose file changed (modification time or
    size) are indexed again.  Unreadable files are recorded in ``failures``, reported with a warning,
    and retried on the next build.  ``wait``: seconds to wait for another build of the same index to
    finish (``None``: as long as it takes; ``0``: raise :class:`IndexBusyError` at once).  Raises
    ``ValueError`` if the index was built with different origin parameters.
    """
    db_path = Path(db_path)
    paths = [Path(p) for p in paths]
    names = [structure_name(p) for p in paths]
    dup = {n for n, k in Counter(names).items() if k > 1}
    if dup:
        raise ValueError(f"structure names must be unique, found duplicates: {sorted(dup)[:5]}")
    _check_database(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(db_path, wait):
        con = sqlite3.connect(db_path, timeout=60)
        report = BuildReport(added=0, skipped=0, failed=[], n_structures=0, n_origins=0)
        try:
            message = "interrupted: stopping after the current structure (Ctrl-C again to stop at once)"
            with StopRequest(message) as stop:
                _build(con, db_path, params, paths, names, progress, report, stop)
        except KeyboardInterrupt:
            raise BuildInterrupted(db_path, _count(con, report)) from None
        else:
            _count(con, report)
        finally:
            con.close()
    if report.failed:
        listing = "\n".join(f"  {e}" if p in e else f"  {p}: {e}" for p, e in report.failed)
        warnings.warn(f"skipped {len(report.failed)} unreadable structure file(s):\n{listing}", stacklevel=2)
    return report


def _check_database(db_path: Path) -> None:
    """A ``ValueError`` unless ``db_path`` is absent, empty or an SQLite database (read before
    SQLite opens it: a file of anything else would be a ``DatabaseError`` deep in the build)."""
    if db_path.is_dir():
        raise IsADirectoryError(f"origin index {db_path} is a folder; give a file path")
    if db_path.is_file() and db_path.stat().st_size > 0:
        with db_path.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise ValueError(f"{db_path} exists and is not an SQLite database (an origin index); give a new "
                                 "file, or an index to resume")


def _build(
    con: sqlite3.Connection,
    db_path: Path,
    params: OriginParams,
    paths: list[Path],
    names: list[str],
    progress: bool,
    report: BuildReport,
    stop: StopRequest,
) -> None:
    """The work of :func:`build_index`, recorded in ``report`` as it goes (so an interrupted build
    can say what it did); a Ctrl-C (``stop``) ends it between structures."""
    con.executescript(_SCHEMA)
    _add_missing_columns(con)
    _check_or_write_meta(con, params, db_path)
    removed, changed = _drop_stale(con, db_path)
    report.removed, report.reindexed = len(removed), len(changed)
    done = {row[0] for row in con.execute("SELECT name FROM structures")}
    todo = [(p, n) for p, n in zip(paths, names) if n not in done]
    report.skipped = len(paths) - len(todo)
    listed = set(names)
    todo += [(p, n) for n, p in changed.items() if n not in listed]
    iterator: Iterable = todo
    if progress:
        from tqdm import tqdm

        iterator = tqdm(todo, desc="indexing structures", unit="structure")
    for path, name in iterator:
        if stop.requested:
            raise KeyboardInterrupt
        try:
            stat = path.stat()
            atoms = load(path, **LOAD_OPTIONS, **params.load_context)
        except (StructureError, FileNotFoundError, OSError) as err:
            report.failed.append((str(path), str(err)))
            with con:
                con.execute("INSERT OR REPLACE INTO failures VALUES (?, ?)", (str(path), str(err)))
            continue
        coords, counts = select_origins(atoms, params)
        report.added += _insert_structure(
            con, name, path, _stored_path(path, db_path), len(atoms), coords, counts, (stat.st_mtime_ns, stat.st_size)
        )


def _count(con: sqlite3.Connection, report: BuildReport) -> BuildReport:
    """``report`` with the index's structure and origin counts filled in."""
    report.n_structures, report.n_origins = con.execute(
        "SELECT COUNT(*), COALESCE(SUM(n_origins), 0) FROM structures"
    ).fetchone()
    return report


@contextmanager
def _build_lock(db_path: Path, wait: float | None) -> Iterator[None]:
    """Hold ``<db_path>.lock`` (an advisory ``flock``, released by the OS if the process dies) while
    building; its content names the holder for the message another build gets."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock; concurrent inserts of one structure are still skipped
        yield
        return
    lock_path = db_path.with_name(db_path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if wait is None else time.monotonic() + wait
        warned = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = lock_path.read_text().strip() or "another process"
                message = f"{db_path}: the index is being built by {holder}"
                if deadline is not None and time.monotonic() >= deadline:
                    raise IndexBusyError(
                        f"{message}; wait for it to finish (a rerun then adds only what is missing) "
                        "or write another index file"
                    ) from None
                if not warned:
                    warnings.warn(f"{message}; waiting for it to finish", stacklevel=4)
                    warned = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  .encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _add_missing_columns(con: sqlite3.Connection) -> None:
    """Indexes written before files were tracked lack ``mtime_ns`` and ``size`` (NULL: not checked
    until the next build records them)."""
    have = {row[1] for row in con.execute("PRAGMA table_info(structures)")}
    with con:
        for column in ("mtime_ns", "size"):
            if column not in have:
                con.execute(f"ALTER TABLE structures ADD COLUMN {column} INTEGER")


def _drop_stale(con: sqlite3.Connection, db_path: Path) -> tuple[list[str], dict[str, Path]]:
    """Drop structures whose file is gone or changed since it was indexed: ``(names of deleted
    files, {name: path} of changed files)``; forget failures of files that are gone."""
    base = db_path.resolve().parent
    removed: list[str] = []
    changed: dict[str, Path] = {}
    rows = con.execute("SELECT id, name, path, mtime_ns, size FROM structures").fetchall()
    with con:
        for sid, name, stored, mtime_ns, size in rows:
            path = base / stored
            try:
                stat = path.stat()
            except OSError:
                removed.append(name)
            else:
                if mtime_ns is None or size is None:
                    con.execute("UPDATE structures SET mtime_ns = ?, size = ? WHERE id = ?",
                                (stat.st_mtime_ns, stat.st_size, sid))
                    continue
                if (stat.st_mtime_ns, stat.st_size) == (mtime_ns, size):
                    continue
                changed[name] = path
            con.execute("DELETE FROM origins WHERE structure_id = ?", (sid,))
            con.execute("DELETE FROM structures WHERE id = ?", (sid,))
        for (failed_path,) in con.execute("SELECT path FROM failures").fetchall():
            if not Path(failed_path).exists():
                con.execute("DELETE FROM failures WHERE path = ?", (failed_path,))
    return removed, changed


def _stored_path(path: Path, db_path: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), db_path.resolve().parent)
    except ValueError:  # different drives
        return str(path.resolve())


def _check_or_write_meta(con: sqlite3.Connection, params: OriginParams, db_path: Path) -> None:
    wanted = {
        "format_version": FORMAT_VERSION,
        "origin_params": json.dumps(params.to_dict(), sort_keys=True),
        "load_options": json.dumps(LOAD_OPTIONS, sort_keys=True),
    }
    have = dict(con.execute("SELECT key, value FROM meta").fetchall())
    if have:
        for key, value in wanted.items():
            if have.get(key) != value:
                raise ValueError(
                    f"{db_path} was built with {key}={have.get(key)}, not {value}; "
                    "use a new index file for different parameters"
                )
        return
    with con:
        con.executemany("INSERT INTO meta VALUES (?, ?)", wanted.items())


def _insert_structure(
    con: sqlite3.Connection,
    name: str,
    source: Path,
    path: str,
    n_atoms: int,
    coords: np.ndarray,
    counts: np.ndarray,
    stat: tuple[int, int],
) -> bool:
    """Add a structure read from ``source`` (stored as ``path``, file ``(mtime_ns, size)``) with its
    origins, and clear any earlier failure recorded for ``source``.  ``False`` if a concurrent
    writer added it first."""
    weights = counts.astype(np.float64)
    cum = np.cumsum(weights)
    with con:  # one transaction (one commit): the structure, all its origins and the failure row
        con.execute("DELETE FROM failures WHERE path = ?", (str(source),))  # takes the write lock
        if con.execute("SELECT 1 FROM structures WHERE name = ?", (name,)).fetchone():
            return False
        first = con.execute("SELECT COALESCE(MAX(id) + 1, 0) FROM origins").fetchone()[0]
        cur = con.execute(
            "INSERT INTO structures (name, path, n_atoms, first_origin, n_origins, total_weight, mtime_ns, size) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, path, n_atoms, first, len(coords), float(weights.sum()), *stat),
        )
        sid = cur.lastrowid
        con.executemany(
            "INSERT INTO origins VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (first + i, sid, float(x), float(y), float(z), float(w), float(c))
                for i, ((x, y, z), w, c) in enumerate(zip(coords.tolist(), weights.tolist(), cum.tolist()))
            ),
        )
    return True


@dataclass(frozen=True)
class StructureInfo:
    """One row of the ``structures`` table (``path`` resolved)."""

    id: int
    name: str
    path: Path
    n_atoms: int
    first_origin: int
    n_origins: int
    total_weight: float


class OriginIndex:
    """Read access to an origin index; safe to pickle to data-loader workers.

    The SQLite connection is opened lazily, read-only, once per process (a connection is never shared
    across a fork), so each worker holds one small connection and no copy of the origins.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"origin index not found: {self.path}")
        _check_database(self.path)
        self._con: sqlite3.Connection | None = None
        self._pid: int | None = None
        meta = dict(self._connection().execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.path}: origin index of format {meta.get('format_version')}, not {FORMAT_VERSION} "
                "(built by another atompaint version, with another origin criterion); rebuild it"
            )
        self.params = OriginParams.from_dict(json.loads(meta["origin_params"]))
        self.load_options = json.loads(meta["load_options"])

    def __getstate__(self) -> dict:
        return {"path": self.path, "params": self.params, "load_options": self.load_options}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._con, self._pid = None, None

    def _connection(self) -> sqlite3.Connection:
        if self._con is None or self._pid != os.getpid():
            self._con = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False)
            self._pid = os.getpid()
        return self._con

    def close(self) -> None:
        if self._con is not None and self._pid == os.getpid():
            self._con.close()
        self._con, self._pid = None, None

    def structures(self) -> list[StructureInfo]:
        """All indexed structures, by id."""
        rows = self._connection().execute(
            "SELECT id, name, path, n_atoms, first_origin, n_origins, total_weight FROM structures ORDER BY id"
        )
        base = self.path.resolve().parent
        return [StructureInfo(r[0], r[1], (base / r[2]).resolve(), *r[3:]) for r in rows]

    def failures(self) -> list[tuple[str, str]]:
        return list(self._connection().execute("SELECT path, error FROM failures ORDER BY path"))

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM origins").fetchone()[0])

    def origin(self, origin_id: int) -> tuple[int, np.ndarray]:
        """``(structure_id, xyz)`` of one origin."""
        row = self._connection().execute(
            "SELECT structure_id, x, y, z FROM origins WHERE id = ?", (int(origin_id),)
        ).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no origin with id {origin_id}")
        return int(row[0]), np.array(row[1:], dtype=np.float64)

    def origins_of(self, structure_id: int) -> np.ndarray:
        """All origin coordinates ``(M, 3)`` of one structure (for inspection and tests)."""
        rows = self._connection().execute(
            "SELECT x, y, z FROM origins WHERE structure_id = ? ORDER BY id", (int(structure_id),)
        ).fetchall()
        return np.array(rows, dtype=np.float64).reshape(-1, 3)

    def weighted_origin(self, structure_id: int, u: float, total_weight: float | None = None) -> int:
        """The origin of ``structure_id`` at cumulative-weight fraction ``u`` in [0, 1).
        ``total_weight``: the structure's ``total_weight`` if the caller holds it (saves a query)."""
        con = self._connection()
        if total_weight is None:
            row = con.execute("SELECT total_weight FROM structures WHERE id = ?", (int(structure_id),)).fetchone()
            total_weight = row[0] if row is not None else None
        if total_weight is None or total_weight <= 0:
            raise KeyError(f"{self.path}: structure {structure_id} has no weighted origins")
        row = con.execute(
            "SELECT id FROM origins WHERE structure_id = ? AND cum_weight > ? ORDER BY cum_weight LIMIT 1",
            (int(structure_id), float(u) * total_weight),
        ).fetchone()
        return int(row[0])


class OriginSampler:
    """Draws origins from a subset of an index's structures: uniform over origins, or weighted.

    Holds three arrays the size of the structure subset; each draw is a ``searchsorted`` plus one
    primary-key (uniform) or indexed range (weighted) lookup.
    """

    def __init__(
        self,
        index: OriginIndex,
        structure_ids: Sequence[int] | None = None,
        weighted: bool = False,
        structures: Sequence[StructureInfo] | None = None,
    ):
        """``structures``: ``index.structures()`` if the caller has already read them."""
        info = {s.id: s for s in (index.structures() if structures is None else structures)}
        ids = sorted(info) if structure_ids is None else [int(i) for i in structure_ids]
        missing = [i for i in ids if i not in info]
        if missing:
            raise KeyError(f"{index.path}: unknown structure id(s) {missing[:5]}")
        ids = [i for i in ids if info[i].n_origins > 0]
        if not ids:
            raise ValueError(f"{index.path}: the selected structures have no origins")
        self.index = index
        self.weighted = weighted
        self.structure_ids = np.array(ids, dtype=np.int64)
        self.first = np.array([info[i].first_origin for i in ids], dtype=np.int64)
        counts = np.array([info[i].n_origins for i in ids], dtype=np.int64)
        self.cum_counts = np.cumsum(counts)
        self.total_weights = np.array([info[i].total_weight for i in ids], dtype=np.float64)
        self.cum_weights = np.cumsum(self.total_weights)

    def __len__(self) -> int:
        """Number of origins available."""
        return int(self.cum_counts[-1])

    def sample(self, rng: np.random.Generator) -> tuple[int, int, np.ndarray]:
        """``(origin_id, structure_id, xyz)``."""
        if self.weighted:
            s = int(np.searchsorted(self.cum_weights, rng.random() * self.cum_weights[-1], side="right"))
            s = min(s, len(self.structure_ids) - 1)
            structure_id, total = int(self.structure_ids[s]), float(self.total_weights[s])
            origin_id = self.index.weighted_origin(structure_id, rng.random(), total)
        else:
            k = int(rng.integers(self.cum_counts[-1]))
            s = int(np.searchsorted(self.cum_counts, k, side="right"))
            origin_id = int(self.first[s] + k - (self.cum_counts[s - 1] if s else 0))
        structure_id, xyz = self.index.origin(origin_id)
        return origin_id, structure_id, xyz
