"""Measurements kept on disk between sessions: the ``backend="auto"`` decisions, the measured
costs of :func:`structlayers.collapse` and atompaint's measured mixing choices, each a
:class:`Measurements` (measure once per key, keep in this process and on disk).

All are timings of a layer shape on a machine, so their keys name the machine
(:func:`device_fingerprint`: device model, torch version, thread count) besides the shape.  The
files live in :func:`cache_dir`: ``$STRUCTLAYERS_CACHE_DIR`` when set (``none`` keeps everything in
memory), else ``$XDG_CACHE_HOME/structlayers`` or ``~/.cache/structlayers``; :func:`set_cache_dir`
changes it in a running process.  Writes are atomic (a temporary file renamed over the old one)
and merge with what another process wrote meanwhile.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable, Hashable
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from structlayers.utils.timing import check_timeable

ENV_VAR = "STRUCTLAYERS_CACHE_DIR"
_OFF = ("none", "off", "")
_override: Path | None | str = "unset"


def set_cache_dir(path: str | Path | None) -> None:
    """Keep caches in ``path`` from now on (``None``: in memory only), overriding the environment."""
    global _override
    _override = None if path is None or str(path).lower() in _OFF else Path(path)
    for cache in _CACHES.values():
        cache.reload()


def cache_dir() -> Path | None:
    """Where the caches live, or ``None`` when they are kept in memory only (see the module docs)."""
    if _override != "unset":
        return _override  # type: ignore[return-value]
    env = os.environ.get(ENV_VAR)
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "structlayers"


@lru_cache(maxsize=1)
def cpu_description() -> dict[str, str]:
    """The CPU as ``/proc/cpuinfo`` names it: ``name`` and, where listed, ``family`` / ``model`` /
    ``stepping`` and the widest x86 vector extension (``vector``: ``avx512``, ``avx2`` or ``sse``).
    Virtual machines often report only a brand ("AMD EPYC") as the name, shared by CPU generations
    whose speed differs, so the numbers and vector width are what tell two machines apart."""
    fields = {"model name": "name", "cpu family": "family", "model": "model", "stepping": "stepping"}
    found: dict[str, str] = {}
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor's block describes them all
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in fields:
                found[fields[key]] = value
            elif key == "flags":
                flags = set(value.split())
    except OSError:
        pass
    description = {"name": found.pop("name", None) or platform.processor() or platform.machine(), **found}
    if flags:
        description["vector"] = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    return description


def device_fingerprint(device: torch.device | str) -> str:
    """The machine a timing on ``device`` was taken on: device model, torch version, CPU threads."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
    else:
        name = " ".join(cpu_description().values())
    return f"{device.type}|{name}|torch {torch.__version__}|threads {torch.get_num_threads()}"


class PersistentCache:
    """A JSON object on disk (``<cache_dir>/<name>.json``), read lazily and written on every set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[str, Any] | None = None

    @property
    def path(self) -> Path | None:
        root = cache_dir()
        return None if root is None else root / f"{self.name}.json"

    def _read(self) -> dict[str, Any]:
        path = self.path
        if path is None or not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}  # a damaged cache is a cold cache
        return data if isinstance(data, dict) else {}

    def reload(self) -> None:
        self._data = None

    def get(self, key: str) -> Any:
        if self._data is None:
            self._data = self._read()
        return self._data.get(key)

    def set(self, key: str, value: Any) -> None:
        if self._data is None:
            self._data = self._read()
        self._data[key] = value
        path = self.path
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            merged = {**self._read(), **self._data}
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{self.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(merged, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
            self._data = merged
        except OSError:
            pass  # an unwritable cache folder costs a re-measurement next session, nothing else

    def clear(self) -> None:
        """Forget every entry, in memory and on disk."""
        self._data = {}
        path = self.path
        if path is not None and path.is_file():
            path.unlink()


_CACHES: dict[str, PersistentCache] = {}


def persistent(name: str) -> PersistentCache:
    """The process-wide cache called ``name``."""
    if name not in _CACHES:
        _CACHES[name] = PersistentCache(name)
    return _CACHES[name]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Measurements(Generic[K, V]):
    """Values measured once per key and kept in this process and on disk (the :func:`persistent`
    cache ``name``, keyed by ``str(key)`` and the machine's :func:`device_fingerprint`).

    ``decode`` turns a stored JSON value back into a value, or ``None`` when it is malformed (a
    cold entry); values must be JSON-serialisable.  A key should name the device it was measured
    on.  Nothing is measured on the ``meta`` device: :meth:`get` raises
    :class:`~structlayers.utils.timing.TimingUnavailable` there.
    """

    def __init__(self, name: str, decode: Callable[[Any], V | None]) -> None:
        self.disk = persistent(name)
        self.decode = decode
        self._memory: dict[K, V] = {}

    def _disk_key(self, key: K, device: torch.device | str) -> str:
        return f"{key}|{device_fingerprint(device)}"

    def cached(self, key: K, device: torch.device | str) -> V | None:
        """The value measured in this process or read from disk, or ``None`` (never measures)."""
        if key in self._memory:
            return self._memory[key]
        if torch.device(device).type == "meta":
            return None
        value = self.decode(self.disk.get(self._disk_key(key, device)))
        if value is not None:
            self._memory[key] = value
        return value

    def get(self, key: K, device: torch.device | str, measure: Callable[[], V]) -> V:
        """The cached value, else ``measure()`` (once, then kept in memory and on disk)."""
        value = self.cached(key, device)
        if value is None:
            check_timeable(device)
            value = self._memory[key] = measure()
            self.disk.set(self._disk_key(key, device), value)
        return value

    def entries(self) -> dict[K, V]:
        """A copy of every value measured or read from disk so far in this process."""
        return dict(self._memory)

    def clear(self, disk: bool = True) -> None:
        """Forget every value in this process, and on disk unless ``disk=False`` (a new session)."""
        self._memory.clear()
        if disk:
            self.disk.clear()
