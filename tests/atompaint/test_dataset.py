"""The neighbour-location dataset: geometry, label correctness, determinism, DataModule, memory."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from atompaint.origins import AtomDensity, OriginIndex, OriginParams, build_index, find_structures
from atompaint.structures import AtomTable
from atompaint.tasks.neighbor_loc import (
    EpochSampler,
    NeighborLocConfig,
    NeighborLocDataConfig,
    NeighborLocDataModule,
    NeighborLocDataset,
    NeighborLocItem,
    ViewPair,
    make_view_pair,
    neighbor_directions,
    split_structures,
    views_overlap,
)
from atompaint.voxelize import ImageParams, random_rotation

DATA = Path(__file__).parent / "data"
SMALL = ImageParams(length_voxels=9, resolution_A=1.0)


@pytest.fixture(scope="module")
def single_atom_index(tmp_path_factory) -> Path:
    """A structure of one sulfur atom: its only origin is the atom itself."""
    d = tmp_path_factory.mktemp("one_atom")
    (d / "one.pdb").write_text(
        "HETATM    1  S   SO4 A   1      10.000  20.000  30.000  1.00 10.00           S\nEND\n"
    )
    db = d / "origins.db"
    build_index(find_structures(d), db, OriginParams(min_atoms=0, drop_non_loi=False))  # SO4 is on the blocklist
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
    config = NeighborLocConfig(image=image, padding_A=3.0 - image.length_A, max_translation_A=0, max_rotation_deg=0)
    assert config.neighbor_distance_A == pytest.approx(3.0)
    ds = NeighborLocDataset(single_atom_index, config, length=30)
    dirs = neighbor_directions("faces")
    for key in range(30):
        view_a, view_b, label, draws, fallback, mask = ds[key]
        assert draws == 1 and not fallback and bool(mask.all())  # min_atoms=0: every B passes at once
        assert view_a[3].sum() > 0 and view_a[[0, 1, 2, 4]].sum() == 0  # sulfur channel only
        np.testing.assert_allclose(_centroid(view_a, 0.5), 0.0, atol=1e-6)
        shift = _centroid(view_a, 0.5) - _centroid(view_b, 0.5)
        np.testing.assert_allclose(shift, 3.0 * dirs[int(label)], atol=0.05)
        assert int(np.argmax(dirs @ shift)) == int(label)


def test_density_rules_follow_the_label_convention_under_random_rotations(single_atom_index: Path) -> None:
    """One atom, randomly rotated views 3 A apart: B shows it on the side facing A, so the rules that
    read B (opposite B's centroid, A - B) name the label, whatever the rotation; the centred atom
    gives A's centroid no direction, and a mask of two directions is respected."""
    from atompaint.tasks.neighbor_loc import rule_predictions

    image = ImageParams(length_voxels=15, resolution_A=0.5, radius_A=0.7)
    config = NeighborLocConfig(image=image, padding_A=3.0 - image.length_A, max_translation_A=0, max_rotation_deg=0)
    ds = NeighborLocDataset(single_atom_index, config, length=24)
    batch = torch.utils.data.default_collate([ds[k] for k in range(24)])
    predicted = rule_predictions(batch.view_a, batch.view_b, ds.directions)
    assert torch.equal(predicted["b_centroid"], batch.label)
    assert torch.equal(predicted["a_minus_b_centroid"], batch.label)
    other = (batch.label + 2) % 6  # a direction orthogonal to the label's axis
    mask = torch.nn.functional.one_hot(batch.label, 6).bool() | torch.nn.functional.one_hot(other, 6).bool()
    assert torch.equal(rule_predictions(batch.view_a, batch.view_b, ds.directions, mask)["b_centroid"], batch.label)
    assert torch.equal(rule_predictions(batch.view_a, batch.view_b, ds.directions)["a_centroid"],
                       torch.zeros(24, dtype=torch.long))


def test_items_are_deterministic_and_independent_of_workers(index_path: Path) -> None:
    config = NeighborLocConfig(image=SMALL)
    ds = NeighborLocDataset(index_path, config, length=12, seed=5)
    a0, b0, label0, *_ = ds[7]
    again = NeighborLocDataset(index_path, config, length=12, seed=5)[7]
    assert torch.equal(a0, again[0]) and torch.equal(b0, again[1]) and torch.equal(label0, again[2])
    assert not torch.equal(a0, NeighborLocDataset(index_path, config, length=12, seed=6)[7][0])
    assert a0.dtype == torch.float32 and a0.shape == (5, 9, 9, 9) and label0.dtype == torch.int64

    def collect(workers: int) -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=EpochSampler(12), num_workers=workers)
        return [torch.cat([a.flatten(1), b.flatten(1), label[:, None].float(), draws[:, None].float()], dim=1)
                for a, b, label, draws, *_ in loader]

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
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, NeighborLocItem)
    a, b, label = batch.view_a, batch.view_b, batch.label
    assert a.shape == b.shape == (4, 5, 9, 9, 9) and a.dtype == torch.float32
    assert batch.b_draws.dtype == torch.int64 and batch.b_fallback.dtype == torch.bool and batch.b_draws.shape == (4,)
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
    assert next(iter(again.train_dataloader())).view_a.shape == (2, 5, 9, 9, 9)


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
    with pytest.raises(ValueError, match="padding_A"):
        NeighborLocConfig(image=SMALL, padding_A=-SMALL.length_A)
    with pytest.raises(ValueError, match="b_max_draws"):
        NeighborLocConfig(b_max_draws=0)
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


def test_view_b_passes_the_density_criterion_of_view_a(index_path: Path) -> None:
    """Every B that is not a fallback is centred where the index's criterion holds; without the
    check many B centres fail it."""
    checked = NeighborLocDataset(index_path, NeighborLocConfig(image=SMALL), length=150)
    unchecked = NeighborLocDataset(index_path, NeighborLocConfig(image=SMALL, b_density_check=False), length=150)
    assert checked.criterion == OriginIndex(index_path).params == OriginParams()
    failed_unchecked, draws = 0, []
    for key in range(150):
        ex = checked.example(key)
        density = checked.density(ex.structure_id)
        count = density.count(ex.views.center_b)
        assert count == pytest.approx(ex.b_count)
        assert bool(density.is_dense(count)) != ex.b_fallback
        assert 1 <= ex.b_draws <= checked.config.b_max_draws and (ex.b_draws == 100 or not ex.b_fallback)
        draws.append(ex.b_draws)
        plain = unchecked.example(key)
        assert plain.b_draws == 1 and not plain.b_fallback and np.isnan(plain.b_count)
        failed_unchecked += not density.is_dense(density.count(plain.views.center_b))
        a_count = density.count(ex.views.center_a)  # view A sits on an origin: dense by construction
        assert density.is_dense(a_count)
    assert failed_unchecked > 30 and max(draws) > 1


@pytest.fixture(scope="module")
def blob_index(tmp_path_factory) -> Path:
    """A compact blob of 40 carbons (all within 2 A of its centre): every atom is an origin, but
    nothing lies one image length away, so no view B can pass the criterion."""
    d = tmp_path_factory.mktemp("blob")
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(40, 3))
    xyz = 2.0 * xyz / np.linalg.norm(xyz, axis=1, keepdims=True) * rng.random((40, 1)) ** (1 / 3)
    lines = [f"HETATM{i + 1:5d}  C   BLB A{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 10.00           C"
             for i, (x, y, z) in enumerate(xyz)]
    (d / "blob.pdb").write_text("\n".join([*lines, "END", ""]))
    db = d / "origins.db"
    build_index(find_structures(d), db)
    assert OriginIndex(db).structures()[0].n_origins == 40
    return db


def test_view_b_redraws_are_bounded_and_fall_back_to_the_densest(blob_index: Path) -> None:
    config = NeighborLocConfig(image=SMALL, b_max_draws=7)
    ds = NeighborLocDataset(blob_index, config, length=20)
    for key in range(20):
        ex = ds.example(key)
        assert ex.b_fallback and ex.b_draws == 7  # bounded: gave up after 7 draws
        # The kept draw is the densest of the 7 (replay the generator to see them all).
        rng = ds.rng(key)
        _, _, origin = ds.sampler.sample(rng)
        counts = [ds.density(ex.structure_id).count(
            make_view_pair(rng, origin, ds.directions, config.neighbor_distance_A, config.max_translation_A,
                           config.max_rotation_deg).center_b) for _ in range(7)]
        assert ex.b_count == pytest.approx(max(counts))
    item = ds[0]
    assert item.b_draws == 7 and bool(item.b_fallback)
    once = NeighborLocDataset(blob_index, replace(config, b_max_draws=1), length=5)
    assert all(once.example(k).b_draws == 1 and once.example(k).b_fallback for k in range(5))


def test_padding_sets_the_distance_between_the_views() -> None:
    assert NeighborLocConfig().padding_A == 2.0
    config = NeighborLocConfig(image=SMALL, padding_A=1.5)
    assert config.neighbor_distance_A == pytest.approx(SMALL.length_A + 1.5)


@settings(max_examples=25, deadline=None)
@given(
    length=st.floats(3.0, 30.0),
    translation=st.floats(0.0, 6.0),
    extra=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_padding_at_least_the_translation_noise_keeps_the_views_apart(length, translation, extra, seed) -> None:
    """Face directions, no rotational noise: views never share volume when padding >= translation."""
    rng = np.random.default_rng(seed)
    dirs = neighbor_directions("faces")
    for _ in range(20):
        pair = make_view_pair(rng, rng.normal(size=3) * 10, dirs, length + translation + extra,
                              max_translation_A=translation)
        assert not views_overlap(pair, length)


def test_without_padding_noisy_views_overlap() -> None:
    rng = np.random.default_rng(0)
    dirs = neighbor_directions("faces")
    pairs = [make_view_pair(rng, np.zeros(3), dirs, 10.0, max_translation_A=2.0) for _ in range(400)]
    share = np.mean([views_overlap(p, 10.0) for p in pairs])
    assert 0.35 < share < 0.65  # about half the offsets point back towards view A
    touching = make_view_pair(rng, np.zeros(3), dirs, 10.0)
    assert not views_overlap(touching, 10.0)  # faces meet, no volume is shared


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), distance=st.floats(0.0, 20.0))
def test_views_overlap_is_exact_for_rotated_cubes(seed: int, distance: float) -> None:
    """The separating-axis test agrees with sampled points (a point inside both cubes means overlap)
    and with the inscribed and circumscribed spheres (intersecting inscribed spheres mean overlap,
    disjoint circumscribed spheres mean none)."""
    rng = np.random.default_rng(seed)
    length = 10.0
    rot_a, rot_b = random_rotation(rng), random_rotation(rng)
    direction = rng.normal(size=3)
    center_b = distance * direction / np.linalg.norm(direction)
    pair = ViewPair(np.zeros(3), center_b, rot_a, rot_b, 0)
    points = rng.uniform(-length / 2, length / 2, size=(4000, 3)) @ rot_a  # uniform in cube A
    in_b = np.all(np.abs((points - center_b) @ rot_b.T) <= length / 2, axis=1)
    overlap = views_overlap(pair, length)
    if in_b.any():
        assert overlap
    if distance < length:  # the inscribed spheres (radius length / 2) intersect
        assert overlap
    if distance > np.sqrt(3) * length:  # the circumscribed spheres do not
        assert not overlap


def test_datamodule_refuses_an_index_built_with_another_criterion(index_path: Path) -> None:
    with pytest.raises(ValueError, match="origin criterion"):
        NeighborLocDataModule(NeighborLocDataConfig(index_path=str(index_path), origins=OriginParams(min_atoms=21)))
    NeighborLocDataModule(NeighborLocDataConfig(index_path=str(index_path)))  # the criterion it was built with


def test_atom_density_ignores_hydrogens_and_waters() -> None:
    atoms = AtomTable.from_arrays(np.zeros((3, 3)), ["C", "H", "O"], entity_type=["polymer", "polymer", "water"])
    assert AtomDensity(atoms).count(np.zeros(3)) == 1.0


def test_controls_agree_for_a_model_that_ignores_view_b(index_path: Path) -> None:
    """The empty and shuffled controls only change view B: a head blind to B's features scores the
    same under all three, and the B statistics match the dataset's own account."""
    from atompaint.encoders import EncoderConfig, build_encoder
    from atompaint.heads import HeadConfig
    from atompaint.tasks.neighbor_loc import NeighborLocClassifier, evaluate_dataset, view_atom_counts

    config = NeighborLocConfig(image=SMALL)
    ds = NeighborLocDataset(index_path, config, length=12)
    encoder = build_encoder(EncoderConfig(architecture="shallow", width=1, max_channels=2, band_limit=1,
                                          grid_size=1, in_channels=SMALL.num_channels, input_size=9))
    model = NeighborLocClassifier(encoder, 6, HeadConfig(hidden=[], dropout=0.0))
    with torch.no_grad():
        model.head.layers[0].weight[:, encoder.field_features:] = 0  # blind to view B
    result = evaluate_dataset(model, ds, batch_size=5)
    scores = result.scores
    assert scores["real"].accuracy == scores["b_empty"].accuracy == scores["b_shuffled"].accuracy
    assert scores["real"].loss == pytest.approx(scores["b_empty"].loss, rel=1e-6)
    examples = [ds.example(k) for k in range(12)]
    assert result.b_redrawn == pytest.approx(np.mean([e.b_draws > 1 for e in examples]))
    atoms = [view_atom_counts(ds, k) for k in range(12)]
    assert result.b_sparse == pytest.approx(np.mean([b < 25 for _, b in atoms]))
    assert min(a for a, _ in atoms) > 0  # view A is centred on an atom
    assert result.b_empty == 0 and result.accuracy_b_empty is None  # B held to the density criterion
    assert result.accuracy_b_not_empty == scores["real"].accuracy
