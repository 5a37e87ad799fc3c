"""Readers for the official dataset file formats: IDX (MNIST) and the CIFAR-10 python pickles.

Every reader validates what it reads (magic numbers, sizes, label ranges) and raises
:class:`DataError` naming the file, so a truncated download never turns into silent garbage.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np

#: IDX element type codes (the third byte of the magic number) and their big-endian dtypes.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ValueError):
    """A dataset file is missing a part, truncated or not in the expected format."""


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"{path}: cannot read ({err}); the file is corrupt or truncated") from err


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` compressed or not)."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{path}: IDX header promises shape {shape} ({expected} bytes) "
                        f"but the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def check_labels(path: Path | str, labels: np.ndarray, n_images: int, n_classes: int = 10) -> np.ndarray:
    """Labels as int64 after checking their count and range against the images."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if labels.shape[0] != n_images:
        raise DataError(f"{path}: {labels.shape[0]} labels for {n_images} images")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{path}: labels outside 0..{n_classes - 1} (found {labels.min()}..{labels.max()})")
    return labels


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels of one official ``cifar-10-batches-py`` pickle."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({err})") from err
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (a {type(batch).__name__}, not a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels', found {sorted(batch)}")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    images = data.reshape(-1, 3, 32, 32)
    return images, check_labels(path, batch["labels"], images.shape[0])


def write_cifar_batch(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images ``(N, 3, 32, 32)`` uint8 and labels in the official python-batch format."""
    batch = {b"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1),
             b"labels": list(map(int, labels))}
    with Path(path).open("wb") as f:
        pickle.dump(batch, f)
