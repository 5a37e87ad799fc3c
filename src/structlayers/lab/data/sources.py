"""Finding and loading the real MNIST and CIFAR-10 files into train / validation arrays.

MNIST: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in the data directory itself, or in
``mnist/``, ``MNIST/raw/`` (torchvision's layout) or ``mnist/MNIST/raw/`` under it.  With the
training split present, train on it and validate on the official test split; with only the test
split (the copy packaged with structlayers), split its 10,000 images 8,000 / 2,000 by a seed.

CIFAR-10: the official ``cifar-10-batches-py/`` pickles (``data_batch_1..5`` train, ``test_batch``
validation), or an ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (uint8
``(N, 3, 32, 32)`` images), such as the 6,102-image subset ``cifar10_subset.npz``.

Without ``data_dir``, the environment variable ``STRUCTLAYERS_DATA`` is used; failing that MNIST
falls back to the packaged test split, and CIFAR-10 (which is not packaged) is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from structlayers.lab.data.idx import DataError, check_labels, read_cifar_batch, read_idx

ENV_VAR = "STRUCTLAYERS_DATA"
PACKAGED_MNIST = Path(__file__).resolve().parent / "mnist"

MNIST_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class ImageSplits:
    """Train and validation images (uint8, ``(N, C, H, W)``) and int64 labels, with provenance."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    source: str
    classes: tuple[str, ...]

    def describe(self) -> str:
        return f"{len(self.train_labels)} train / {len(self.val_labels)} validation images from {self.source}"


def _data_root(data_dir: str | Path | None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else None


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_mnist(root: Path) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """The folder under ``root`` holding MNIST IDX files and the ``{split: (images, labels)}`` found."""
    for folder in (root, root / "mnist", root / "MNIST" / "raw", root / "mnist" / "MNIST" / "raw"):
        splits = {}
        for split in ("train", "t10k"):
            images = _find_idx(folder, f"{split}-images-idx3-ubyte")
            labels = _find_idx(folder, f"{split}-labels-idx1-ubyte")
            if images and labels:
                splits[split] = (images, labels)
            elif images or labels:
                missing = f"{split}-{'labels-idx1' if images else 'images-idx3'}-ubyte[.gz]"
                raise DataError(f"{folder}: MNIST {split} split is incomplete, {missing} is missing")
        if splits:
            return folder, splits
    raise FileNotFoundError(
        f"no MNIST IDX files (train/t10k-images-idx3-ubyte[.gz] and -labels-idx1-ubyte[.gz]) in {root}, "
        f"{root / 'mnist'} or {root / 'MNIST' / 'raw'}"
    )


def _read_mnist_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: MNIST images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    labels = read_idx(labels_path)
    return images[:, None], check_labels(labels_path, labels, images.shape[0])


def seeded_split(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` of a random split of ``n`` items with ``val_size`` held out."""
    if not 0 < val_size < n:
        raise ValueError(f"validation size must be in 1..{n - 1}, got {val_size}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def load_mnist(data_dir: str | Path | None = None, *, val_size: int = 2000, split_seed: int = 0) -> ImageSplits:
    """MNIST from ``data_dir`` (see the module docs); the packaged test split by default."""
    root = _data_root(data_dir) or PACKAGED_MNIST
    folder, splits = find_mnist(root)
    if "train" in splits:
        train = _read_mnist_split(*splits["train"])
        val = _read_mnist_split(*splits["t10k"]) if "t10k" in splits else None
        if val is None:
            tr, va = seeded_split(len(train[1]), val_size, split_seed)
            train, val = (train[0][tr], train[1][tr]), (train[0][va], train[1][va])
        source = f"MNIST in {folder}"
    else:
        images, labels = _read_mnist_split(*splits["t10k"])
        tr, va = seeded_split(len(labels), val_size, split_seed)
        train, val = (images[tr], labels[tr]), (images[va], labels[va])
        source = f"MNIST test split in {folder}, split {len(tr)}/{len(va)} (seed {split_seed})"
    return ImageSplits(train[0], train[1], val[0], val[1], source, MNIST_CLASSES)


def _load_cifar_npz(path: Path) -> ImageSplits:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read the npz file ({err})") from err
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
    if missing:
        raise DataError(f"{path}: a CIFAR-10 npz needs x_train, y_train, x_test, y_test; missing {sorted(missing)}")
    parts = []
    for x_key, y_key in (("x_train", "y_train"), ("x_test", "y_test")):
        x = arrays[x_key]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32):
            raise DataError(f"{path}: {x_key} must be uint8 (N, 3, 32, 32), got {x.dtype} {x.shape}")
        parts += [x, check_labels(f"{path}:{y_key}", arrays[y_key], x.shape[0])]
    return ImageSplits(*parts, source=f"CIFAR-10 arrays in {path}", classes=CIFAR10_CLASSES)


def _load_cifar_batches(folder: Path) -> ImageSplits:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: CIFAR-10 python batches missing: {', '.join(missing)}")
    train = [read_cifar_batch(folder / n) for n in names[:5]]
    val_images, val_labels = read_cifar_batch(folder / "test_batch")
    return ImageSplits(
        np.concatenate([b[0] for b in train]),
        np.concatenate([b[1] for b in train]),
        val_images,
        val_labels,
        source=f"CIFAR-10 python batches in {folder}",
        classes=CIFAR10_CLASSES,
    )


def load_cifar10(data_dir: str | Path | None = None) -> ImageSplits:
    """CIFAR-10 from ``data_dir`` (an ``.npz`` file, or a folder holding ``cifar-10-batches-py/`` or an npz)."""
    root = _data_root(data_dir)
    if root is None:
        raise FileNotFoundError(
            f"no CIFAR-10 data: pass --data-dir (a cifar-10-batches-py/ folder or an npz such as "
            f"cifar10_subset.npz) or set {ENV_VAR}"
        )
    if root.is_file():
        return _load_cifar_npz(root)
    for folder in (root, root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"):
        if (folder / "test_batch").exists() or (folder / "data_batch_1").exists():
            return _load_cifar_batches(folder)
    for npz in (root / "cifar10_subset.npz", root / "cifar10" / "cifar10_subset.npz", root / "cifar10.npz"):
        if npz.is_file():
            return _load_cifar_npz(npz)
    raise FileNotFoundError(
        f"no CIFAR-10 data in {root}: expected cifar-10-batches-py/ (official python batches) or cifar10_subset.npz"
    )
