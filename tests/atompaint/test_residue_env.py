"""The amino-acid environment task: residue rules, own atoms removed, determinism, structure split,
evaluation with controls, and training + evaluation end to end."""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from atompaint.cli import main
from atompaint.origins.index import LOAD_OPTIONS
from atompaint.structures import AtomTable, load
from atompaint.tasks.neighbor_loc.datamodule import split_structures
from atompaint.tasks.residue_env import (
    AMINO_ACIDS,
    ResidueEnvConfig,
    ResidueEnvDataset,
    build_residue_index,
    find_residues,
    ideal_cb,
    residue_label,
    residue_ordinals,
    split_structures3,
)
from atompaint.tasks.residue_env.evaluate import evaluate_predictions, macro_accuracy, plot_confusion
from atompaint.training import config_from_dict, train
from atompaint.voxelize import ImageParams, voxelize
from atompaint.voxelize.rotations import quaternion_to_matrix

warnings.filterwarnings("ignore", message=".*py3nj.*")
warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
#: The RNA file has no element column (elements inferred, with a warning).
pytestmark = pytest.mark.filterwarnings("ignore::atompaint.structures.StructureWarning")

DATA = Path(__file__).parent / "data"
#: Three protein chains, BPTI (alternate locations, a phosphate, an UNX atom) and an RNA (no amino acid).
STRUCTURES = ("2cviA.pdb.gz", "2xcjA.pdb.gz", "2xdgA.pdb.gz", "5PTI.cif.gz", "1k5i_c36_tip3_cut.pdb.gz")
SMALL = ImageParams(length_voxels=7, resolution_A=1.6, channels=(("C",), ("N", "O", "S", "*")))


def _residue(name: str, number: int, atoms: dict[str, tuple[float, float, float]], chain: str = "A") -> dict:
    return {"coords": list(atoms.values()), "atom_name": list(atoms), "element": [a[0] for a in atoms],
            "residue_name": [name] * len(atoms), "residue_id": [number] * len(atoms), "chain": [chain] * len(atoms)}


def _table(*residues: dict) -> AtomTable:
    cols = {k: sum((r[k] for r in residues), []) for k in residues[0]}
    return AtomTable.from_arrays(np.asarray(cols.pop("coords")), cols.pop("element"), **cols)


#: Backbone of ideal geometry (N-CA 1.458 A, CA-C 1.525 A, N-CA-C 111 degrees).
BACKBONE = {"N": (-0.527, 1.359, 0.0), "CA": (0.0, 0.0, 0.0), "C": (1.525, 0.0, 0.0), "O": (2.15, -1.05, 0.3)}


def _shifted(atoms: dict[str, tuple[float, float, float]], dx: float) -> dict[str, tuple[float, float, float]]:
    return {k: (x + dx, y, z) for k, (x, y, z) in atoms.items()}


def test_labels_of_standard_modified_and_other_residues():
    assert [residue_label(n) for n in AMINO_ACIDS] == list(range(20))
    assert residue_label("MSE") == AMINO_ACIDS.index("MET")
    assert residue_label("SEP") == AMINO_ACIDS.index("SER")
    assert residue_label("HYP") == AMINO_ACIDS.index("PRO")
    assert residue_label("MSE", "exclude") is None
    for other in ("UNK", "HOH", "PO4", "PCA", "ADE"):
        assert residue_label(other) is None


def test_find_residues_centres_fallbacks_and_counts():
    cb = (-0.53, -0.77, -1.21)
    atoms = _table(
        _residue("ALA", 1, {**BACKBONE, "CB": cb}),
        _residue("ALA", 2, _shifted(BACKBONE, 10)),  # no CB: placed from N, CA, C
        _residue("GLY", 3, _shifted(BACKBONE, 20)),  # centred on CA
        _residue("MSE", 4, _shifted({**BACKBONE, "CB": cb, "SE": (0.0, -1.0, -3.0)}, 30)),  # labelled MET
        _residue("LEU", 5, _shifted({"CA": (0.0, 0.0, 0.0), "O": (1.0, 0.0, 0.0)}, 40)),  # no CB, no N: skipped
        _residue("PO4", 6, {"P": (50.0, 0.0, 0.0)}),  # not an amino acid: never an example
    )
    found = find_residues(atoms, reach_A=3.0)
    assert found.label.tolist() == [AMINO_ACIDS.index(n) for n in ("ALA", "ALA", "GLY", "MET")]
    assert found.residue.tolist() == [0, 1, 2, 3]
    n, ca, c = (np.array(BACKBONE[k]) for k in ("N", "CA", "C"))
    np.testing.assert_allclose(found.center, [cb, ideal_cb(n, ca, c) + [10, 0, 0], ca + [20, 0, 0],
                                              np.array(cb) + [30, 0, 0]], atol=1e-5)
    counts = found.counts
    assert (counts.examples, counts.mapped, counts.placed_cb, counts.missing_backbone) == (4, 1, 1, 1)
    assert counts.isolated == 4  # 10 A apart: no other residue within 3 A of any centre
    excluded = find_residues(atoms, nonstandard="exclude")
    assert excluded.counts.excluded_modified == 1 and AMINO_ACIDS.index("MET") not in excluded.label
    everywhere = find_residues(atoms, center="ideal-cb")
    np.testing.assert_allclose(everywhere.center[2], ideal_cb(n, ca, c) + [20, 0, 0], atol=1e-5)
    assert everywhere.counts.placed_cb == 0  # counts only CBs missing from the file
    # Centred on CA, the LEU without N or CB is an example too.
    np.testing.assert_allclose(find_residues(atoms, center="ca").center[:, 0], [0, 10, 20, 30, 40], atol=1e-6)


def test_a_structure_without_amino_acids_gives_no_examples():
    found = find_residues(_table(_residue("PO4", 1, {"P": (0.0, 0.0, 0.0)})))
    assert len(found.label) == 0 and found.counts.examples == 0


def test_ideal_cb_matches_real_geometry():
    """On a real chain the placed CB lies within 0.2 A of the CB in the file for most residues."""
    atoms = load(DATA / "2cviA.pdb.gz", **LOAD_OPTIONS)
    ordinal = residue_ordinals(atoms)
    errors = []
    for r in np.unique(ordinal):
        names = list(atoms.atom_name[ordinal == r])
        if all(k in names for k in ("N", "CA", "C", "CB")):
            pos = {k: atoms.coords[ordinal == r][names.index(k)].astype(np.float64) for k in ("N", "CA", "C", "CB")}
            errors.append(np.linalg.norm(ideal_cb(pos["N"], pos["CA"], pos["C"]) - pos["CB"]))
    assert len(errors) > 50 and np.median(errors) < 0.2


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1),
       st.lists(st.floats(-50, 50), min_size=3, max_size=3))
def test_ideal_cb_moves_with_the_backbone(q, shift):
    rotation = quaternion_to_matrix(np.asarray(q) / np.linalg.norm(q))
    n, ca, c = (np.array(BACKBONE[k]) for k in ("N", "CA", "C"))
    moved = ideal_cb(*(rotation @ p + shift for p in (n, ca, c)))
    np.testing.assert_allclose(moved, rotation @ ideal_cb(n, ca, c) + shift, atol=1e-9)
    assert abs(np.linalg.norm(ideal_cb(n, ca, c) - ca) - 1.52) < 0.03


@pytest.fixture(scope="module")
def index():
    return build_residue_index([DATA / s for s in STRUCTURES], ResidueEnvConfig(image=SMALL))


def test_index_of_real_structures(index):
    assert set(index.structure_names) == {Path(s).name.split(".")[0] for s in STRUCTURES}
    assert len(index) == index.counts.examples > 100
    assert set(index.label.tolist()) <= set(range(20))
    assert not np.isin(index.structure, index.structure_names.index("1k5i_c36_tip3_cut")).any()
    assert sum(index.class_counts().values()) == len(index)


def test_unreadable_files_are_recorded_not_raised(tmp_path):
    bad = tmp_path / "broken.pdb.gz"
    bad.write_bytes(b"not gzip")
    built = build_residue_index([bad, DATA / "2cviA.pdb.gz"], ResidueEnvConfig(image=SMALL))
    assert [Path(p).name for p, _ in built.failed] == ["broken.pdb.gz"]
    assert built.structure_names == ("2cviA",) and len(built) > 0


def test_own_atoms_are_removed_and_the_rest_kept(index):
    dataset = ResidueEnvDataset(index, ResidueEnvConfig(image=SMALL), split="val")
    for key in (0, 7, 60):
        row, center, rotation = dataset.pose(key)
        atoms = load(index.paths[index.structure[row]], **LOAD_OPTIONS)
        own = residue_ordinals(atoms) == index.residue[row]
        expected = voxelize(atoms.select(~own), center, SMALL, rotation=rotation)
        np.testing.assert_allclose(dataset[key].image.numpy(), expected, atol=1e-5)
        assert voxelize(atoms.select(own), center, SMALL, rotation=rotation).sum() > 0  # they would show


def test_an_isolated_residue_is_kept_with_an_empty_image(tmp_path):
    lone = tmp_path / "lone.pdb"
    lines = [f"ATOM  {i + 1:5d}  {name:<3s} ALA A   1    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           {name[0]}"
             for i, (name, (x, y, z)) in enumerate({**BACKBONE, "CB": (-0.53, -0.77, -1.21)}.items())]
    lone.write_text("\n".join(lines) + "\nEND\n")
    config = ResidueEnvConfig(image=SMALL)
    built = build_residue_index([lone], config)
    assert len(built) == 1 and built.counts.isolated == 1
    item = ResidueEnvDataset(built, config)[0]
    assert item.image.abs().sum() == 0 and item.label == AMINO_ACIDS.index("ALA")


def test_items_are_deterministic_per_seed_split_epoch_and_index(index):
    config = ResidueEnvConfig(image=SMALL, max_translation_A=0.5)
    a = ResidueEnvDataset(index, config, seed=3, split="train", permute=True, length=50)
    b = pickle.loads(pickle.dumps(a))
    for key in (0, 13, 57, 130):
        np.testing.assert_array_equal(a[key].image.numpy(), b[key].image.numpy())
        assert a[key].label == b[key].label
    assert not np.array_equal(a[0].image.numpy(), a[50].image.numpy())  # epoch 1 differs
    other = ResidueEnvDataset(index, config, seed=4, split="train", permute=True, length=50)
    assert not np.allclose(a.pose(0)[2], other.pose(0)[2])
    rows = [a.row(k) for k in range(len(index))]
    assert sorted(rows) == list(range(len(index)))  # a permutation cycle sees every residue once


def test_shuffled_labels_keep_the_class_counts(index):
    plain = ResidueEnvDataset(index, ResidueEnvConfig(image=SMALL), split="train")
    shuffled = ResidueEnvDataset(index, ResidueEnvConfig(image=SMALL), split="train", shuffle_labels=True)
    assert sorted(shuffled.labels.tolist()) == sorted(plain.labels.tolist())
    assert (shuffled.labels != plain.labels).mean() > 0.5


@settings(max_examples=20, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=3, max_size=60, unique=True),
       st.floats(0.05, 0.4), st.floats(0.0, 0.4))
def test_structure_split_is_disjoint_and_complete(names, val, test):
    ids = dict(enumerate(names))
    parts = split_structures3(ids, val, test)
    flat = [i for p in parts.values() for i in p]
    assert sorted(flat) == sorted(ids) and len(set(flat)) == len(flat)
    assert parts["val"] == split_structures(ids, val)[1]  # the neighbor-location task's validation set
    twins = {**ids, **{len(ids) + i: name for i, name in ids.items()}}  # every name twice (.pdb and .cif)
    for split, members in split_structures3(twins, val, test).items():
        assert members == sorted([*parts[split], *(len(ids) + i for i in parts[split])])


def test_evaluation_scores_controls_and_lifts(tmp_path):
    rng = np.random.default_rng(0)
    label = torch.as_tensor(rng.integers(0, 4, size=400))
    logits = torch.nn.functional.one_hot(label, 20).float() * 5  # a perfect model
    train_counts = np.array([50, 30, 10, 10] + [0] * 16)
    empty = torch.zeros(1, 20)
    empty[0, 2] = 1.0
    shuffled = torch.zeros(400, 20)
    report = evaluate_predictions(logits, label, train_counts, empty, shuffled_logits=shuffled)
    assert set(report) == {"n", "scores", "lift", "best_control", "lift_over_best", "per_class", "confusion"}
    assert set(report["scores"]) == {"model", "majority", "prior", "empty", "shuffled_labels"}
    y = label.numpy()
    assert report["scores"]["model"]["accuracy"] == 1 and report["scores"]["model"]["macro_accuracy"] == 1
    assert report["scores"]["majority"]["accuracy"] == pytest.approx((y == 0).mean())
    assert report["scores"]["empty"]["accuracy"] == pytest.approx((y == 2).mean())
    prior = (train_counts + 1) / (train_counts.sum() + 20)
    assert report["scores"]["prior"]["accuracy"] == pytest.approx(prior[y].mean())
    assert report["scores"]["majority"]["macro_accuracy"] == pytest.approx(0.25)  # 4 classes present
    best = report["lift_over_best"]["accuracy"]
    assert best["lift"] == pytest.approx(1 - max(report["scores"][c]["accuracy"] for c in report["lift"]))
    assert best["se"] > 0
    assert report["per_class"]["ALA"]["accuracy"] == 1 and report["per_class"]["VAL"]["accuracy"] is None
    matrix = np.asarray(report["confusion"]["matrix"])
    assert matrix.shape == (20, 20) and matrix.trace() == 400
    assert plot_confusion({**report, "name": "perfect", "split": "val"}, tmp_path / "c.png").stat().st_size > 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 19), min_size=2, max_size=80), st.integers(0, 2**31))
def test_macro_accuracy_averages_over_present_classes(labels, seed):
    y = np.asarray(labels)
    correct = np.random.default_rng(seed).random(len(y)).round()
    per_class = [correct[y == c].mean() for c in np.unique(y)]
    assert macro_accuracy(correct, y) == pytest.approx(np.mean(per_class))


def _run_config(structure_dir: Path, **trainer) -> dict:
    return {
        "name": "residue-tiny",
        "task": "residue-env",
        "encoder": {"architecture": "shallow", "width": 1, "max_channels": 2, "band_limit": 1, "grid_size": 1},
        "head": {"hidden": [16], "layer": "acdc", "depth": 2},
        "data": {"structure_dir": str(structure_dir), "image": {"length_voxels": 7, "resolution_A": 1.6,
                                                                "channels": [["C"], ["N", "O", "S", "*"]]},
                 "val_fraction": 0.25, "test_fraction": 0.25, "batch_size": 8},
        "optim": {"lr": 0.01},
        "trainer": {"accelerator": "cpu", "devices": 1, "log_every_n_steps": 1, "progress_bar": False, **trainer},
    }


def test_train_and_evaluate_end_to_end(tmp_path, capsys):
    structures = tmp_path / "structures"
    structures.mkdir()
    for name in STRUCTURES:
        shutil.copy(DATA / name, structures / name)
    smoke = tmp_path / "smoke.yaml"
    smoke.write_text(yaml.safe_dump(_run_config(structures)))
    assert main(["train", "--config", str(smoke), "--fast-dev-run", "--out-dir",
                 str(tmp_path / "runs")]) == 0
    assert '"val/loss"' in capsys.readouterr().out and not (tmp_path / "runs").exists()
    config = _run_config(structures, max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    result = train(config_from_dict(config), out_dir=tmp_path / "runs")
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(result.last_checkpoint), "--split", "test", "--json", str(out),
                 "--shuffled-labels", str(result.last_checkpoint), "--plot", str(tmp_path / "c.png")]) == 0
    report = json.loads(out.read_text())
    assert report["task"] == "residue-env" and report["split"] == "test"
    assert report["n"] == sum(report["data"]["class_counts"]["test"].values())
    assert set(report["scores"]) == {"model", "majority", "prior", "empty", "shuffled_labels"}
    assert report["lift"]["shuffled_labels"]["accuracy"] == 0  # the same weights
    structures_per_split = [set(v) for v in report["data"]["structures"].values()]
    assert sum(map(len, structures_per_split)) == len(set.union(*structures_per_split))
    assert (tmp_path / "c.png").is_file() and "lift over the best control" in capsys.readouterr().out


def test_structure_cache_keeps_the_most_recent_and_pickles_empty():
    from atompaint.tasks.common import LRUCache

    cache: LRUCache[int, str] = LRUCache(2)
    built = []

    def build(k: int) -> str:
        built.append(k)
        return f"s{k}"

    for k in (1, 2, 1, 3, 1, 2):
        assert cache.get(k, lambda k=k: build(k)) == f"s{k}"
    assert built == [1, 2, 3, 2] and len(cache) == 2  # 2 was evicted by 3, 1 stayed in use
    copy = pickle.loads(pickle.dumps(cache))
    assert len(copy) == 0 and copy.size == 2
