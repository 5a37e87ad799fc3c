"""Measurements kept on disk between sessions: the ``backend="auto"`` decisions and the measured
costs of :func:`structlayers.collapse`.

Both are timings of a layer shape on a machine, so their keys name the machine
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
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

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


@lru_cache(maxsize=16)
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_fingerprint(device: torch.device | str) -> str:
    """The machine a timing on ``device`` was taken on: device model, torch version, CPU threads."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
    else:
        name = _cpu_name()
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
