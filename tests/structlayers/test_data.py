"""MNIST IDX / CIFAR-10 readers, data-path resolution, corrupt-file errors and the DataModules."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from structlayers.lab.data import (
    CIFAR10DataModule,
    DataConfig,
    DataError,
    MNISTDataModule,
    load_cifar10,
    load_mnist,
    read_idx,
    write_cifar_batch,
    write_idx,
)
from structlayers.lab.data.datamodule import random_crop_flip
from structlayers.utils.sampling import EpochSampler


def make_mnist(folder: Path, n: int, split: str = "t10k", gz: bool = True,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(folder / f"{split}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", labels)
    return images, labels


def make_cifar_batches(folder: Path, per_batch: int = 4) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(folder / name, rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8),
                          rng.integers(0, 10, per_batch))


def test_idx_round_trip_gz_and_raw(tmp_path: Path) -> None:
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("x.idx", "x.idx.gz"):
        write_idx(tmp_path / name, a)
        np.testing.assert_array_equal(read_idx(tmp_path / name), a)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda raw: b"\x01\x02" + raw[2:], "bad magic"),
        (lambda raw: raw[:-5], "promises shape"),
        (lambda raw: raw[:6], "truncated IDX header"),
    ],
)
def test_corrupt_idx_is_a_clear_error(tmp_path: Path, corrupt, message: str) -> None:
    write_idx(tmp_path / "x.idx", np.zeros((3, 2, 2), np.uint8))
    (tmp_path / "x.idx").write_bytes(corrupt((tmp_path / "x.idx").read_bytes()))
    with pytest.raises(DataError, match=message):
        read_idx(tmp_path / "x.idx")


def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.idx.gz", np.zeros((50, 28, 28), np.uint8))
    raw = (tmp_path / "x.idx.gz").read_bytes()
    (tmp_path / "x.idx.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_idx(tmp_path / "x.idx.gz")


def test_packaged_mnist_is_the_official_test_split_split_8k_2k() -> None:
    splits = load_mnist()
    assert splits.train_images.shape == (8000, 1, 28, 28) and splits.val_images.shape == (2000, 1, 28, 28)
    assert splits.train_images.dtype == np.uint8
    # The official test split has 1,135 ones and 980 zeros in total.
    counts = np.bincount(np.concatenate([splits.train_labels, splits.val_labels]), minlength=10)
    assert counts[1] == 1135 and counts[0] == 980
    again = load_mnist()
    np.testing.assert_array_equal(again.val_labels, splits.val_labels)


def test_full_mnist_in_torchvision_layout_trains_on_train_validates_on_test(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    train_images, _ = make_mnist(raw, 30, "train", gz=False)
    test_images, _ = make_mnist(raw, 12, "t10k", gz=False, seed=1)
    splits = load_mnist(tmp_path)
    np.testing.assert_array_equal(splits.train_images[:, 0], train_images)
    np.testing.assert_array_equal(splits.val_images[:, 0], test_images)


def test_env_var_selects_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_mnist(tmp_path / "mnist", 20)
    monkeypatch.setenv("STRUCTLAYERS_DATA", str(tmp_path))
    splits = load_mnist(val_size=5)
    assert len(splits.train_labels) == 15 and len(splits.val_labels) == 5


def test_missing_or_inconsistent_mnist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no MNIST IDX files"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(DataError, match="labels-idx1-ubyte.*missing"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="3 labels for 4 images"):
        load_mnist(tmp_path, val_size=1)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(4, 12, np.uint8))
    with pytest.raises(DataError, match="outside 0..9"):
        load_mnist(tmp_path, val_size=1)


def test_cifar_python_batches_and_npz(tmp_path: Path) -> None:
    make_cifar_batches(tmp_path / "cifar-10-batches-py")
    splits = load_cifar10(tmp_path)
    assert splits.train_images.shape == (20, 3, 32, 32) and splits.val_images.shape == (4, 3, 32, 32)
    assert splits.classes[0] == "airplane"
    np.savez(tmp_path / "c.npz", x_train=splits.train_images, y_train=splits.train_labels,
             x_test=splits.val_images, y_test=splits.val_labels)
    again = load_cifar10(tmp_path / "c.npz")
    np.testing.assert_array_equal(again.train_images, splits.train_images)


def test_corrupt_or_missing_cifar(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar_batches(folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3: not a CIFAR-10 python batch"):
        load_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing: data_batch_3"):
        load_cifar10(tmp_path)
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(DataError, match="missing"):
        load_cifar10(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 data"):
        load_cifar10(tmp_path / "empty")


def test_shuffle_depends_only_on_seed_and_epoch() -> None:
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    epoch2 = list(a)
    assert epoch2 == list(b) and sorted(epoch2) == list(range(50))
    assert list(a) == list(b) != epoch2  # each pass advances the epoch
    b.set_epoch(2)
    assert list(b) == epoch2


def test_random_crop_flip_is_a_shift_and_a_mirror() -> None:
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop_flip(x, 0, g, flip=False), x)
    out = random_crop_flip(x, 0, torch.Generator().manual_seed(0), flip=True)
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    shifted = random_crop_flip(x, 2, torch.Generator().manual_seed(1), flip=False)
    # Every output is a window of the zero-padded input.
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(2):
        windows = [padded[i, :, r : r + 5, c : c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(shifted[i], w) for w in windows)


def test_datamodules_normalise_batches(tmp_path: Path) -> None:
    make_mnist(tmp_path, 40)
    dm = MNISTDataModule(DataConfig(data_dir=tmp_path, batch_size=8, val_size=10))
    dm.setup("fit")
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    images, labels = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert images.dtype == torch.float32 and images.shape == (10, 1, 28, 28)
    expected = (torch.from_numpy(dm.splits.val_images).float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(images, expected)
    assert len(dm.train_dataloader()) == 30 // 8

    make_cifar_batches(tmp_path / "c" / "cifar-10-batches-py")
    cifar = CIFAR10DataModule(DataConfig(data_dir=tmp_path / "c", batch_size=4))
    cifar.setup("fit")
    images, _ = cifar.on_after_batch_transfer(next(iter(cifar.train_dataloader())), 0)
    assert images.shape == (4, 3, 32, 32) and abs(float(images.mean())) < 1.5


def test_gzip_file_is_really_gzip(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.gz", np.ones((2, 2), np.uint8))
    with gzip.open(tmp_path / "x.gz") as f:
        assert f.read()[:4] == bytes([0, 0, 8, 2])
