"""Reader and writer of Atom3D LMDB data sets (the format the LBA data ships in).

Layout (``atom3d.datasets.LMDBDataset`` / ``make_lmdb_dataset``): record ``i`` is stored under the key
``str(i)`` as gzip-compressed JSON (or pickle); pandas DataFrames are serialized with
``to_json(orient="split")`` and a ``types`` entry records every field's original type so they can
be rebuilt.  Metadata keys: ``num_examples``, ``serialization_format``, ``id_to_idx``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import lmdb
import pandas as pd

Format = Literal["json", "pkl"]
_DATAFRAME_TYPE = str(pd.DataFrame)
# LMDB allows one environment per file per process; readers of the same path share it.
_OPEN_ENVS: dict[tuple[str, int], lmdb.Environment] = {}


def _serialize(record: dict[str, Any], fmt: Format) -> bytes:
    if fmt == "pkl":
        return pickle.dumps(record)
    return json.dumps(
        record, default=lambda df: json.loads(df.to_json(orient="split", double_precision=6))
    ).encode()


def _deserialize(data: bytes, fmt: str) -> Any:
    if fmt == "pkl":
        return pickle.loads(data)
    if fmt == "json":
        return json.loads(data)
    raise ValueError(f"unknown Atom3D serialization format {fmt!r}")


def write_lmdb(records: Iterable[dict[str, Any]], path: str | os.PathLike[str], fmt: Format = "json") -> int:
    """Write ``records`` (dicts with an ``id``) as an Atom3D LMDB at ``path``; returns the count."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=int(1e11))
    count = 0
    id_to_idx: dict[str, int] = {}
    try:
        with env.begin(write=True) as txn:
            for record in records:
                if "id" not in record:
                    raise ValueError("every Atom3D record needs an 'id'")
                record = dict(record)
                record["types"] = {key: str(type(value)) for key, value in record.items()}
                record["types"]["types"] = str(dict)
                buffer = io.BytesIO()
                with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6) as f:
                    f.write(_serialize(record, fmt))
                if not txn.put(str(count).encode(), buffer.getvalue(), overwrite=False):
                    raise ValueError(f"{path} already holds a record {count}; write to an empty directory")
                id_to_idx[str(record["id"])] = count
                count += 1
            txn.put(b"num_examples", str(count).encode())
            txn.put(b"serialization_format", fmt.encode())
            txn.put(b"id_to_idx", _serialize(id_to_idx, fmt))
    finally:
        env.close()
    return count


class AtomLMDB:
    """Random access to the records of an Atom3D LMDB, DataFrames restored."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"LMDB not found: {self.path}")
        self._env: lmdb.Environment | None = None
        env = self._open()
        with env.begin(write=False) as txn:
            num = txn.get(b"num_examples")
            fmt = txn.get(b"serialization_format")
            if num is None or fmt is None:
                raise ValueError(f"{self.path} is not an Atom3D LMDB (no num_examples / serialization_format)")
            self._len = int(num)
            self.format = fmt.decode()
            raw_ids = txn.get(b"id_to_idx")
        self.id_to_idx: dict[str, int] = _deserialize(raw_ids, self.format) if raw_ids else {}

    def _open(self) -> lmdb.Environment:
        # Opened lazily (and re-opened per worker process): LMDB handles must not cross a fork.
        if self._env is None or self._pid != os.getpid():
            key = (str(self.path.resolve()), os.getpid())
            if key not in _OPEN_ENVS:
                _OPEN_ENVS[key] = lmdb.open(
                    str(self.path), max_readers=126, readonly=True, lock=False, readahead=False, meminit=False,
                    subdir=self.path.is_dir(),
                )
            self._env = _OPEN_ENVS[key]
            self._pid = os.getpid()
        return self._env

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_env"] = None
        return state

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self._len:
            raise IndexError(f"record {index} out of range for {self._len} records")
        with self._open().begin(write=False) as txn:
            compressed = txn.get(str(index).encode())
        if compressed is None:
            raise KeyError(f"{self.path} has no record {index}")
        with gzip.GzipFile(fileobj=io.BytesIO(compressed), mode="rb") as f:
            record = _deserialize(f.read(), self.format)
        for key, type_name in record.get("types", {}).items():
            if type_name == _DATAFRAME_TYPE and isinstance(record.get(key), dict):
                record[key] = pd.DataFrame(**record[key])
        return record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]
