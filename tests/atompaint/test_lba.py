"""LBA: the Atom3D LMDB format round-trips, the dataset voxelizes it, fine-tuning freezes the encoder."""

from __future__ import annotations

import gzip
import json
import warnings

import lmdb
import numpy as np
import pandas as pd
import pytest
import torch

from atompaint.tasks.lba import AtomLMDB, LBADataset, split_paths, write_lmdb
from atompaint.tasks.neighbor_loc import NeighborLocTask
from atompaint.training import config_from_dict, train
from atompaint.voxelize import ImageParams

warnings.filterwarnings("ignore", message=".*py3nj.*")
warnings.filterwarnings("ignore", category=UserWarning, module="lightning")

COLUMNS = ["ensemble", "subunit", "model", "chain", "hetero", "insertion_code", "residue", "segid",
           "resname", "name", "element", "x", "y", "z", "fullname"]


def atom_frame(rng: np.random.Generator, n: int, center: np.ndarray, elements: list[str]) -> pd.DataFrame:
    coords = center + rng.normal(scale=2.0, size=(n, 3))
    rows = [
        ["1abc", 0, 0, "A", " ", " ", i + 1, "", "GLY", el, el, *np.round(xyz, 3), f" {el}  "]
        for i, (el, xyz) in enumerate(zip(rng.choice(elements, n), coords))
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def make_records(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        center = rng.normal(size=3) * 5
        records.append({
            "id": f"{i}abc",
            "atoms_pocket": atom_frame(rng, 40, center, ["C", "N", "O", "S"]),
            "atoms_ligand": atom_frame(rng, 8, center, ["C", "O"]),
            "scores": {"neglog_aff": float(rng.uniform(2, 10))},
            "seq": "GAVL",
            "smiles": "CCO",
        })
    return records


def test_lmdb_round_trip(tmp_path):
    records = make_records(3)
    assert write_lmdb(records, tmp_path / "db") == 3
    db = AtomLMDB(tmp_path / "db")
    assert len(db) == 3 and db.format == "json"
    assert db.id_to_idx == {"0abc": 0, "1abc": 1, "2abc": 2}
    for original, read in zip(records, db):
        assert read["id"] == original["id"]
        assert read["scores"] == original["scores"]
        pd.testing.assert_frame_equal(read["atoms_pocket"], original["atoms_pocket"], check_dtype=False, atol=1e-6)
        pd.testing.assert_frame_equal(read["atoms_ligand"], original["atoms_ligand"], check_dtype=False, atol=1e-6)
    with pytest.raises(IndexError):
        db[3]


def test_reads_atom3d_layout_written_by_hand(tmp_path):
    """The on-disk layout Atom3D writes: gzip'd JSON per str(index) key plus metadata keys."""
    frame = pd.DataFrame({"element": ["C", "O"], "x": [0.0, 1.0], "y": [0.0, 0.0], "z": [0.0, 0.0]})
    record = {"id": "x", "atoms_ligand": json.loads(frame.to_json(orient="split")), "scores": {"neglog_aff": 4.5}}
    record["types"] = {"id": str(str), "atoms_ligand": str(pd.DataFrame), "scores": str(dict), "types": str(dict)}
    env = lmdb.open(str(tmp_path / "db"), map_size=10**8)
    with env.begin(write=True) as txn:
        txn.put(b"0", gzip.compress(json.dumps(record).encode()))
        txn.put(b"num_examples", b"1")
        txn.put(b"serialization_format", b"json")
        txn.put(b"id_to_idx", json.dumps({"x": 0}).encode())
    env.close()
    read = AtomLMDB(tmp_path / "db")[0]
    pd.testing.assert_frame_equal(read["atoms_ligand"], frame)
    assert read["scores"]["neglog_aff"] == 4.5


def write_splits(root, n=(8, 4, 4)):
    base = root / "split-by-sequence-identity-30" / "data"
    for seed, (split, count) in enumerate(zip(("train", "val", "test"), n)):
        write_lmdb(make_records(count, seed), base / split)
    return base


def test_dataset_voxelizes_pocket_and_ligand(tmp_path):
    base = write_splits(tmp_path)
    assert split_paths(tmp_path, "sequence-identity-30")["val"] == base / "val"
    image = ImageParams(length_voxels=9, resolution_A=1.0, channels=(("C",), ("*",)))
    data = LBADataset(base / "train", image, ligand_channels=True)
    x, y = data[0]
    assert x.shape == (4, 9, 9, 9) and x.dtype == torch.float32
    assert x[2:].sum() > 0, "ligand channels are empty"
    assert y.item() == pytest.approx(AtomLMDB(base / "train")[0]["scores"]["neglog_aff"])
    merged = LBADataset(base / "train", image, ligand_channels=False)[0][0]
    torch.testing.assert_close(merged.sum(), x.sum(), rtol=1e-4, atol=1e-4)
    with pytest.raises(FileNotFoundError):
        split_paths(tmp_path, "sequence-identity-60")


def test_finetune_from_neighbor_loc_with_frozen_encoder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_splits(tmp_path / "lba")
    encoder = {"architecture": "shallow", "width": 1, "max_channels": 2, "band_limit": 1, "grid_size": 1}
    image = {"length_voxels": 7, "resolution_A": 1.5, "channels": [["C"], ["*"]]}
    pretrain = NeighborLocTask(config_from_dict({
        "name": "pre", "task": "neighbor-loc", "encoder": encoder,
        "data": {"structure_dir": "unused", "image": image},
    }), num_classes=6)
    checkpoint = tmp_path / "pre.ckpt"
    torch.save({"state_dict": pretrain.state_dict()}, checkpoint)

    config = config_from_dict({
        "name": "lba", "task": "lba", "encoder": encoder, "head": {"hidden": [8]},
        "data": {"root": str(tmp_path / "lba"), "image": image, "batch_size": 4, "ligand_channels": False},
        "finetune": {"pretrained": str(checkpoint), "freeze_encoder_epochs": 1},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1, "progress_bar": False},
    })
    assert config.encoder.in_channels == 2  # ligand_channels: false keeps the pretrained encoder's input
    result = train(config, out_dir=tmp_path / "runs")
    for key in ("val/rmse", "val/mae", "val/pearson", "val/spearman", "train/rmse"):
        assert key in result.metrics
    state = torch.load(result.last_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    before = {k: v for k, v in pretrain.state_dict().items() if k.startswith("model.encoder.") and "weights" in k}
    assert before
    for key, value in before.items():
        torch.testing.assert_close(state[key], value, msg=f"{key} changed while the encoder was frozen")
    assert not (tmp_path / "lightning_logs").exists()

    checkpoint.unlink()  # the resumed run's weights come from its own checkpoint, not the pretrained one
    config.trainer.max_epochs = 2
    resumed = train(config, out_dir=tmp_path / "runs", resume=True)
    assert torch.load(resumed.last_checkpoint, map_location="cpu", weights_only=True)["epoch"] == 1
