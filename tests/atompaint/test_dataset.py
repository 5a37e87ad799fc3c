"""The neighbour-location dataset: geometry, label correctness, determinism, DataModule, memory."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from atompaint.origins import OriginParams, build_index, find_structures
from atompaint.tasks.neighbor_loc import (
    EpochSampler,
    NeighborLocConfig,
    NeighborLocDataConfig,
    NeighborLocDataModule,
    NeighborLocDataset,
    make_view_pair,
    neighbor_directions,
    split_structures,
)
from atompaint.voxelize import ImageParams, random_rotation

DATA = Path(__file__).parent / "data"
SMALL = ImageParams(length_voxels=9, resolution_A=1.0)


@pytest.fixture(scope="module")
def index_path(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("structures")
    for name in ["2xdgA", "2xcjA", "2cviA"]:
        shutil.copy(DATA / f"{name}.pdb.gz", d)
    db = d / "origins.db"
    build_index(find_structures(d), db)
    return db


@pytest.fixture(scope="module")
def single_atom_index(tmp_path_factory) -> Path:
    """A structure of one sulfur atom: its only origin is the atom itself."""
    d = tmp_path_factory.mktemp("one_atom")
    (d / "one.pdb").write_text(
        "HETATM    1  S   SO4 A   1      10.000  20.000  30.000  1.00 10.00           S\nEND\n"
    )
    db = d / "origins.db"
    build_index(find_structures(d), db, OriginParams(min_neighbors=0))
    return db


@pytest.mark.parametrize(("name", "n"), [("faces", 6), ("icosahedron", 12), ("dodecahedron", 20)])
def test_direction_sets(name: str, n: int) -> None:
    dirs = neighbor_directions(name)
    assert dirs.shape == (n, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    dots = dirs @ dirs.T
    np.fill_diagonal(dots, -1)
    assert dots.max() < 0.9  # all distinct
    np.testing.assert_allclose(dirs.sum(axis=0), 0, atol=1e-12)  # symmetric sets


def test_random_rotations_are_proper() -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        r = random_rotation(rng)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)


def test_zero_noise_offsets_are_exactly_the_label_direction(index_path: Path) -> None:
    config = NeighborLocConfig(image=SMALL, max_translation_A=0, max_rotation_deg=0, random_orientation=False)
    ds = NeighborLocDataset(index_path, config, length=50)
    dirs = neighbor_directions("faces")
    labels = set()
    for key in range(50):
        v = ds.example(key).views
        np.testing.assert_allclose(v.center_b - v.center_a, config.neighbor_distance_A * dirs[v.label], atol=1e-12)
        np.testing.assert_array_equal(v.rotation_a, np.eye(3))
        labels.add(v.label)
    assert labels == set(range(6))


def test_random_orientation_keeps_the_offset_in_the_image_frame() -> None:
    rng = np.random.default_rng(3)
    dirs = neighbor_directions("icosahedron")
    for _ in range(20):
        v = make_view_pair(rng, np.array([1.0, 2.0, 3.0]), dirs, 12.0)
        np.testing.assert_allclose(v.rotation_a, v.rotation_b)
        np.testing.assert_allclose(v.rotation_a @ (v.center_b - v.center_a), 12.0 * dirs[v.label], atol=1e-9)
        noisy = make_view_pair(rng, np.zeros(3), dirs, 12.0, max_translation_A=8.0, max_rotation_deg=40.0)
        offset = noisy.rotation_a @ noisy.center_b - 12.0 * dirs[noisy.label]
        assert np.linalg.norm(offset) <= 8.0 + 1e-9
        extra = noisy.rotation_b @ noisy.rotation_a.T
        angle = np.degrees(np.arccos(np.clip((np.trace(extra) - 1) / 2, -1, 1)))
        assert angle <= 40.0 + 1e-6


def _centroid(image: torch.Tensor, resolution: float) -> np.ndarray:
    density = image.sum(dim=0).double().numpy()
    n = density.shape[0]
    axis = (np.arange(n) - (n - 1) / 2) * resolution
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    return (grid * density[..., None]).sum(axis=(0, 1, 2)) / density.sum()


def test_images_show_the_labelled_offset(single_atom_index: Path) -> None:
    """With zero noise, view A shows the atom at its centre and view B shows it at -distance * d[label]
    (in the shared rotated image frame), so the image pair determines the label."""
    image = ImageParams(length_voxels=15, resolution_A=0.5, radius_A=0.7)
    config = NeighborLocConfig(image=image, distance_A=3.0, max_translation_A=0, max_rotation_deg=0)
    ds = NeighborLocDataset(single_atom_index, config, length=30)
    dirs = neighbor_directions("faces")
    for key in range(30):
        view_a, view_b, label = ds[key]
        assert view_a[3].sum() > 0 and view_a[[0, 1, 2, 4]].sum() == 0  # sulfur channel only
        np.testing.assert_allclose(_centroid(view_a, 0.5), 0.0, atol=1e-6)
        shift = _centroid(view_a, 0.5) - _centroid(view_b, 0.5)
        np.testing.assert_allclose(shift, 3.0 * dirs[int(label)], atol=0.05)
        assert int(np.argmax(dirs @ shift)) == int(label)


def test_items_are_deterministic_and_independent_of_workers(index_path: Path) -> None:
    config = NeighborLocConfig(image=SMALL)
    ds = NeighborLocDataset(index_path, config, length=12, seed=5)
    a0, b0, label0 = ds[7]
    again = NeighborLocDataset(index_path, config, length=12, seed=5)[7]
    assert torch.equal(a0, again[0]) and torch.equal(b0, again[1]) and torch.equal(label0, again[2])
    assert not torch.equal(a0, NeighborLocDataset(index_path, config, length=12, seed=6)[7][0])
    assert a0.dtype == torch.float32 and a0.shape == (5, 9, 9, 9) and label0.dtype == torch.int64

    def collect(workers: int) -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=EpochSampler(12), num_workers=workers)
        return [torch.cat([a.flatten(1), b.flatten(1), label[:, None].float()], dim=1) for a, b, label in loader]

    serial, parallel = collect(0), collect(2)
    assert all(torch.equal(x, y) for x, y in zip(serial, parallel))


def test_epochs_differ_and_validation_is_fixed() -> None:
    train = EpochSampler(5)
    assert list(train) == [0, 1, 2, 3, 4] and list(train) == [5, 6, 7, 8, 9]
    val = EpochSampler(5, fixed=True)
    assert list(val) == list(val) == [0, 1, 2, 3, 4]


def test_datamodule_batches_and_split(index_path: Path) -> None:
    config = NeighborLocDataConfig(
        index_path=str(index_path), image=SMALL, directions="icosahedron", batch_size=4, train_size=8, val_size=4,
        val_fraction=0.34,
    )
    dm = NeighborLocDataModule(config)
    dm.setup("fit")
    train_ids = set(dm.train_dataset.sampler.structure_ids.tolist())
    val_ids = set(dm.val_dataset.sampler.structure_ids.tolist())
    assert train_ids and val_ids and not train_ids & val_ids
    a, b, label = next(iter(dm.train_dataloader()))
    assert a.shape == b.shape == (4, 5, 9, 9, 9) and a.dtype == torch.float32
    assert label.dtype == torch.int64 and label.shape == (4,) and int(label.max()) < dm.num_classes == 12
    first_val = [x[2] for x in dm.val_dataloader()]
    assert all(torch.equal(x, y) for x, y in zip(first_val, [x[2] for x in dm.val_dataloader()]))
    epoch0 = next(iter(dm.train_dataloader()))[0]
    assert not torch.equal(epoch0, next(iter(dm.train_dataloader()))[0])  # fresh examples each epoch
    assert dm.state_dict()["train_epoch"] == 3


def test_structure_dir_builds_then_reuses_the_index(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ATOMPAINT_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "s"
    d.mkdir()
    for name in ["2xdgA", "2xcjA"]:
        shutil.copy(DATA / f"{name}.pdb.gz", d)
    config = NeighborLocDataConfig(structure_dir=str(d), image=SMALL, batch_size=2, train_size=2)
    dm = NeighborLocDataModule(config)
    assert dm.index_path.parent == tmp_path / "cache" and dm.index_path.is_file()
    mtime = dm.index_path.stat().st_mtime_ns
    again = NeighborLocDataModule(config)
    assert again.index_path == dm.index_path and dm.index_path.stat().st_mtime_ns == mtime
    a, _, _ = next(iter(again.train_dataloader()))
    assert a.shape == (2, 5, 9, 9, 9)


def test_split_by_structure_is_deterministic() -> None:
    names = {i: f"{i:04d}X" for i in range(20)}
    train, val = split_structures(names, 0.25)
    assert len(val) == 5 and sorted(train + val) == list(range(20))
    assert split_structures(dict(reversed(list(names.items()))), 0.25) == (train, val)
    assert split_structures({1: "a"}, 0.5) == ([1], [])


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_memory_stays_flat_over_many_epochs(index_path: Path) -> None:
    config = NeighborLocConfig(image=SMALL, cache_structures=2)  # 3 structures, 2 cached: constant eviction
    ds = NeighborLocDataset(index_path, config, length=100)
    sampler = EpochSampler(100)
    for key in sampler:  # warm-up epoch
        ds[key]
    before = _rss_mb()
    for _ in range(8):
        for key in sampler:
            ds[key]
    growth = _rss_mb() - before
    assert len(ds._cache) <= 2
    assert growth < 15, f"RSS grew by {growth:.1f} MB over 800 items"


def test_bad_configuration_errors(index_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown directions"):
        NeighborLocConfig(directions="octagon")
    with pytest.raises(ValueError, match="noise"):
        NeighborLocConfig(max_translation_A=-1)
    with pytest.raises(ValueError, match="distance_A"):
        NeighborLocConfig(distance_A=0)
    with pytest.raises(ValueError, match="length"):
        NeighborLocDataset(index_path, length=0)
    with pytest.raises(FileNotFoundError, match="origin index"):
        NeighborLocDataModule(NeighborLocDataConfig(index_path=str(tmp_path / "none.db")))
    with pytest.raises(ValueError, match="structure_dir"):
        NeighborLocDataModule(NeighborLocDataConfig())
    with pytest.raises(ValueError, match="batch_size"):
        NeighborLocDataConfig(batch_size=0)
    with pytest.raises(ValueError, match="val_fraction"):
        split_structures({1: "a"}, 1.5)
    assert replace(NeighborLocConfig(), directions="dodecahedron").num_classes == 20
