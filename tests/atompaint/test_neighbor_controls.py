"""Zero-parameter density rules, masks and chance, and the neighbour-task constructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from atompaint.origins import AtomDensity, OriginParams
from atompaint.structures import AtomTable
from atompaint.tasks.neighbor_loc import (
    ConstructionError,
    NeighborLocConfig,
    NeighborLocDataset,
    chance_accuracy,
    chance_se,
    check_draw,
    density_centroids,
    derangement,
    mask_logits,
    masked_argmax,
    neighbor_centers,
    neighbor_directions,
    rule_predictions,
    score_rules,
)
from atompaint.voxelize import ImageParams, random_rotation

SMALL = ImageParams(length_voxels=9, resolution_A=1.6)
FACES = neighbor_directions("faces")
L = 9


def blob(offset: np.ndarray, channels: int = 2) -> torch.Tensor:
    """An image ``(C, L, L, L)`` with density in the voxel ``offset`` voxels from the centre."""
    image = torch.zeros(channels, L, L, L)
    i, j, k = (np.asarray(offset) + (L - 1) // 2).tolist()
    image[channels - 1, i, j, k] = 1.0
    return image


@given(st.lists(st.integers(-4, 4), min_size=3, max_size=3), st.floats(0.1, 10))
def test_centroid_of_one_voxel_is_its_offset(offset: list[int], mass: float) -> None:
    image = blob(np.array(offset))[None] * mass
    np.testing.assert_allclose(density_centroids(image)[0].numpy(), offset, atol=1e-5)


def test_centroid_of_an_empty_image_is_the_centre() -> None:
    assert torch.equal(density_centroids(torch.zeros(2, 3, L, L, L)), torch.zeros(2, 3))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 5), st.integers(1, 4), st.integers(1, 4))
def test_rules_read_the_label_from_density_on_the_labelled_sides(label: int, a_step: int, b_step: int) -> None:
    """View B lies in direction d[label] from A (image frame): A dense towards B and B dense towards A
    makes every rule right; the empty-B and empty-A cases leave only the rule that reads the other view."""
    d = FACES[label].astype(int)
    a, b = blob(a_step * d)[None], blob(-b_step * d)[None]
    for name, predicted in rule_predictions(a, b, FACES).items():
        assert int(predicted) == label, name
    empty = torch.zeros_like(a)
    assert int(rule_predictions(a, empty, FACES)["a_centroid"]) == label
    assert int(rule_predictions(empty, b, FACES)["b_centroid"]) == label
    assert int(rule_predictions(empty, b, FACES)["a_minus_b_centroid"]) == label


def test_rules_choose_among_the_allowed_directions_only() -> None:
    """A's density points to +x, which the mask forbids: the rule picks the allowed direction closest
    to +x; with nothing to go on (empty views) it picks the first allowed direction."""
    a = blob(np.array([3, 1, 0]))[None]
    mask = torch.tensor([[False, True, True, False, False, False]])  # -x, +y
    assert int(rule_predictions(a, torch.zeros_like(a), FACES, mask)["a_centroid"]) == 2
    empty = torch.zeros_like(a)
    assert {int(p) for p in rule_predictions(empty, empty, FACES, mask).values()} == {1}


@given(st.lists(st.lists(st.booleans(), min_size=6, max_size=6).filter(any), min_size=1, max_size=40),
       st.integers(0, 2**31 - 1))
def test_masked_argmax_stays_in_the_mask_and_chance_is_mean_inverse_size(rows: list[list[bool]], seed: int) -> None:
    mask = torch.tensor(rows)
    scores = torch.from_numpy(np.random.default_rng(seed).normal(size=mask.shape)).float()
    picked = masked_argmax(scores, mask)
    assert bool(mask[torch.arange(len(rows)), picked].all())
    sizes = mask.sum(1).double()
    assert chance_accuracy(mask) == pytest.approx(float((1 / sizes).mean()))
    p = 1 / sizes
    assert chance_se(mask) == pytest.approx(float((p * (1 - p)).sum().sqrt() / len(rows)))


def test_chance_of_a_uniform_guess_matches_simulation() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((4000, 6)) < 0.4
    mask[:, 0] = True
    label = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
    guess = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
    assert np.mean(label == guess) == pytest.approx(chance_accuracy(mask), abs=3 * chance_se(mask))


def test_masked_logits_give_no_probability_or_gradient_outside_the_mask() -> None:
    logits = torch.randn(4, 6, requires_grad=True)
    mask = torch.tensor([[True, True, False, False, False, False]] * 4)
    label = torch.tensor([0, 1, 1, 0])
    loss = F.cross_entropy(mask_logits(logits, mask), label)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(logits.grad[:, 2:] == 0) and torch.all(logits.grad[:, :2] != 0)
    assert mask_logits(logits, None) is logits


@given(st.integers(2, 50), st.integers(0, 1000))
def test_derangement_has_no_fixed_point(n: int, seed: int) -> None:
    perm = derangement(n, seed)
    assert sorted(perm.tolist()) == list(range(n)) and not np.any(perm == np.arange(n))


def clusters(points: np.ndarray, atoms_each: int = 30) -> AtomDensity:
    """Dense clusters of carbon atoms (0.1 A apart) at ``points``."""
    rng = np.random.default_rng(0)
    coords = np.concatenate([p + 0.1 * rng.normal(size=(atoms_each, 3)) for p in points])
    return AtomDensity(AtomTable.from_arrays(coords, "C"), OriginParams())


@settings(max_examples=15, deadline=None)
@given(st.lists(st.booleans(), min_size=6, max_size=6), st.integers(0, 2**31 - 1))
def test_dense_set_is_the_directions_with_structure(dense: list[bool], seed: int) -> None:
    """Clusters at some neighbour centres of a rotated view: exactly those directions are dense, and
    ``balanced`` accepts the draw when at least two are."""
    rotation = random_rotation(np.random.default_rng(seed))
    origin = np.array([1.0, 2.0, 3.0])
    centers = neighbor_centers(origin, rotation, FACES, 16.4)
    density = clusters(np.concatenate([origin[None], centers[np.array(dense)]]))
    check = check_draw("balanced", density, origin, rotation, FACES, 16.4)
    assert check.dense.tolist() == dense
    assert check.accepted == (sum(dense) >= 2) and check.allowed.tolist() == dense
    assert check_draw("dense-b", density, origin, rotation, FACES, 16.4).allowed.all()


def test_balanced_both_and_all_dense_need_structure_around_every_candidate_b() -> None:
    origin, rotation, distance = np.zeros(3), np.eye(3), 10.0
    pair = [np.array([10.0, 0, 0]), np.array([-10.0, 0, 0])]  # S = {+x, -x}
    density = clusters(np.array([origin, *pair]))
    assert check_draw("balanced", density, origin, rotation, FACES, distance).accepted
    assert not check_draw("balanced-both", density, origin, rotation, FACES, distance).accepted
    # From B at +x, the direction back to A (-x) is dense; -(-x) = +x from B, i.e. 2 D x, must be too.
    closed = clusters(np.array([origin, *pair, [20.0, 0, 0], [-20.0, 0, 0]]))
    assert check_draw("balanced-both", closed, origin, rotation, FACES, distance).accepted
    assert not check_draw("all-dense", closed, origin, rotation, FACES, distance).accepted
    lattice = np.array([[i, j, k] for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3)
                        if abs(i) + abs(j) + abs(k) <= 2], dtype=float) * distance
    check = check_draw("all-dense", clusters(lattice), origin, rotation, FACES, distance)
    assert check.accepted and check.allowed.all() and check.checked_points == 6 + 18
    holes = lattice[~np.all(lattice == [distance, distance, 0], axis=1)]
    assert not check_draw("all-dense", clusters(holes), origin, rotation, FACES, distance).accepted


def test_balanced_items_draw_the_label_from_the_dense_set(index_path: Path) -> None:
    config = NeighborLocConfig(image=SMALL, max_translation_A=1, max_rotation_deg=10, construction="balanced")
    ds = NeighborLocDataset(index_path, config, length=16, seed=3)
    for key in range(16):
        ex = ds.example(key)
        item = ds[key]
        assert torch.equal(item.mask, torch.from_numpy(ex.mask)) and bool(item.mask[item.label])
        check = check_draw("balanced", ds.density(ex.structure_id), ex.views.center_a, ex.views.rotation_a,
                           ds.directions, config.neighbor_distance_A)
        assert np.array_equal(check.dense, ex.mask)
        assert ex.b_fallback or (ex.mask.sum() >= 2 and check.accepted)
    right, labels, masks = score_rules(ds, batch_size=5)
    assert set(right) == {"a_centroid", "b_centroid", "a_minus_b_centroid"}
    assert all(len(v) == 16 for v in right.values())
    assert np.array_equal(masks, np.stack([ds.example(k).mask for k in range(16)]))
    assert labels.tolist() == [ds.example(k).views.label for k in range(16)]


@pytest.mark.parametrize("construction", ["all-dense", "balanced-both"])
def test_constructions_single_chains_cannot_satisfy_fail_with_numbers(index_path: Path, construction: str) -> None:
    config = NeighborLocConfig(image=SMALL, construction=construction, b_max_draws=20)
    ds = NeighborLocDataset(index_path, config, length=4)
    with pytest.raises(ConstructionError, match=rf"{construction}: none of 20 \(origin, orientation\) draws.*most "
                                                r"dense directions seen was \d of 6"):
        ds.example(0)


def test_bad_construction_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown construction"):
        NeighborLocConfig(construction="balancd")
    with pytest.raises(ValueError, match="min_dense must be >= 2"):
        NeighborLocConfig(construction="balanced", min_dense=1)
    with pytest.raises(ValueError, match="dense-b construction only"):
        NeighborLocConfig(construction="balanced", b_density_check=False)


def test_evaluation_scores_every_control_and_rule_on_the_construction(index_path: Path) -> None:
    """A head blind to view A scores the same with A real, emptied or swapped; the rules match
    :func:`score_rules`; chance, lift and its standard error follow from the scores."""
    import json
    from dataclasses import asdict

    from atompaint.encoders import EncoderConfig, build_encoder
    from atompaint.heads import HeadConfig
    from atompaint.tasks.neighbor_loc import NeighborLocClassifier, evaluate_dataset

    config = NeighborLocConfig(image=SMALL, construction="balanced")
    ds = NeighborLocDataset(index_path, config, length=12)
    encoder = build_encoder(EncoderConfig(architecture="shallow", width=1, max_channels=2, band_limit=1,
                                          grid_size=1, in_channels=SMALL.num_channels, input_size=9))
    model = NeighborLocClassifier(encoder, 6, HeadConfig(hidden=[], dropout=0.0))
    with torch.no_grad():
        model.head.layers[0].weight[:, : encoder.field_features] = 0  # blind to view A
    result = evaluate_dataset(model, ds, batch_size=5)
    scores = result.scores
    assert set(scores) == {"real", "a_empty", "a_shuffled", "b_empty", "b_shuffled"}
    assert scores["real"].accuracy == scores["a_empty"].accuracy == scores["a_shuffled"].accuracy
    right, _, masks = score_rules(ds, batch_size=7)
    assert {k: v.accuracy for k, v in result.rules.items()} == pytest.approx({k: v.mean() for k, v in right.items()})
    assert result.chance == pytest.approx(chance_accuracy(masks)) and result.construction == "balanced"
    assert sum(result.mask_sizes.values()) == 12 and result.n == 12
    others = {**{k: v.accuracy for k, v in scores.items() if k != "real"},
              **{f"rule_{k}": v.accuracy for k, v in result.rules.items()}}
    assert result.lift == pytest.approx(scores["real"].accuracy - max(others.values()))
    assert others[result.best_control] == max(others.values())
    best = scores.get(result.best_control) or result.rules[result.best_control.removeprefix("rule_")]
    assert result.lift_se == pytest.approx(np.hypot(scores["real"].se, best.se))
    assert scores["real"].z == pytest.approx((scores["real"].accuracy - result.chance) / result.chance_se)
    assert json.loads(json.dumps(asdict(result)))["rules"]["b_centroid"]["loss"] is None


def test_a_construction_is_probed_before_training(index_path: Path) -> None:
    """The share of accepted draws decides whether ``b_max_draws`` is enough (failure rate 1e-6)."""
    enough = NeighborLocConfig(image=SMALL, construction="balanced", b_max_draws=10_000)
    share = NeighborLocDataset(index_path, enough, length=4).check_construction(draws=200)
    assert 0 < share < 1
    needed = int(np.ceil(np.log(1e-6) / np.log1p(-share)))
    too_few = NeighborLocConfig(image=SMALL, construction="balanced", b_max_draws=needed - 1)
    few = NeighborLocDataset(index_path, too_few, length=4)
    with pytest.raises(ValueError, match=rf"set data.b_max_draws >= {needed}"):
        few.check_construction(draws=200)
    dense = NeighborLocDataset(index_path, NeighborLocConfig(image=SMALL, construction="all-dense"), length=4)
    with pytest.raises(ConstructionError, match=r"none of 200 .* most dense directions seen was \d of 6"):
        dense.check_construction(draws=200)
    assert NeighborLocDataset(index_path, NeighborLocConfig(image=SMALL), length=4).check_construction() == 1.0
