"""Fault probes of ``atompaint train``: training state that cannot be lost or confused.

The same probes as ``structlayers train``'s (tests/faults/test_training_faults.py), through the
atompaint command line on real structures: a tiny neighbor-location model (9^3 views, two batches
of four pairs per epoch) trained by SGD at a learning rate of 1e-12, so that validation does not
improve after the first epoch and no best-model checkpoint is written after it.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atompaint.cli import main
from atompaint.origins import build_index, find_structures
from structlayers.lightning import checkpoint_info
from structlayers.lightning.checkpoints import load_checkpoint
from tests.faults.probes import CLI, error_line, tree_digest

DATA = Path(__file__).parents[1] / "atompaint" / "data"
EPOCHS, BATCHES = 3, 2
NAME = "probe"


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The probe's YAML config, reading an origin index of three test structures (one held out)."""
    folder = tmp_path_factory.mktemp("structures")
    for name in ["2xdgA", "2xcjA", "2cviA"]:
        shutil.copy(DATA / f"{name}.pdb.gz", folder)
    build_index(find_structures(folder), folder / "origins.db")
    config = {
        "name": NAME, "task": "neighbor-loc",
        "encoder": {"architecture": "shallow", "width": 1, "max_channels": 2, "band_limit": 1, "grid_size": 1},
        "head": {"hidden": [16], "layer": "dense"},
        "data": {"index_path": str(folder / "origins.db"), "image": {"length_voxels": 9, "resolution_A": 1.6},
                 "val_fraction": 0.34, "train_size": 4 * BATCHES, "val_size": 4, "batch_size": 4},
        "optim": {"optimizer": "sgd", "lr": 1e-12},
        "trainer": {"max_epochs": EPOCHS, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1,
                    "progress_bar": False},
    }
    path = folder / "probe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_argv(config_path: Path, out_dir: Path, *extra: object) -> list[object]:
    return ["train", "--config", config_path, "--out-dir", out_dir, *extra]


@pytest.fixture(scope="module")
def finished_run(config_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``atompaint train neighbor-loc --config probe.yaml --out-dir runs``: the run folder runs/probe."""
    out = tmp_path_factory.mktemp("runs")
    assert main([str(a) for a in train_argv(config_path, out)]) == 0
    return out / NAME


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run's out-dir (a moved or copied run, as a user would make); its run folder."""
    return Path(shutil.copytree(finished_run.parent, tmp_path / "copy")) / NAME


def sessions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_last_checkpoint_holds_the_final_epoch(finished_run: Path) -> None:
    with (finished_run / "csv" / "version_0" / "metrics.csv").open() as f:
        val_acc = {int(r["epoch"]): float(r["val/acc"]) for r in csv.DictReader(f) if r["val/acc"]}
    assert len(val_acc) == EPOCHS and max(val_acc.values()) == val_acc[0], "validation must not improve"
    best = [checkpoint_info(p) for p in (finished_run / "checkpoints").glob("best-*.ckpt")]
    assert [b.epoch for b in best] == [0]
    last = checkpoint_info(finished_run / "checkpoints" / "last.ckpt")
    assert (last.epoch, last.global_step) == (EPOCHS - 1, EPOCHS * BATCHES)
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["global_step"] == EPOCHS * BATCHES and (finished_run / "curves.png").is_file()


def test_a_copied_run_resumes_from_the_checkpoint_that_got_furthest(run_copy: Path, config_path: Path,
                                                                    atompaint: CLI) -> None:
    ckpts = run_copy / "checkpoints"
    (ckpts / "last.ckpt").rename(ckpts / "last-v1.ckpt")  # Lightning's name for a second last.ckpt
    shutil.copy(next(ckpts.glob("best-*.ckpt")), ckpts / "last.ckpt")  # a stale last.ckpt from the past
    code, _, err = atompaint(*train_argv(config_path, run_copy.parent, "--resume", "--epochs", EPOCHS + 1))
    assert code == 0, err
    assert f"resuming from {ckpts / 'last-v1.ckpt'} (epoch {EPOCHS - 1}, step {EPOCHS * BATCHES})" in err
    assert checkpoint_info(ckpts / "last.ckpt").global_step == (EPOCHS + 1) * BATCHES
    assert sessions(run_copy)[-1]["resumed_from"]["path"] == str(ckpts / "last-v1.ckpt")


@pytest.mark.parametrize(("flags", "diff"), [
    (["--head-layer", "acdc"], "head.layer: 'dense' -> 'acdc'"),
    (["--set", "encoder.width=2"], "encoder.width: 1 -> 2"),
    (["--set", "optim.optimizer=adamw"], "optim.optimizer: 'sgd' -> 'adamw'"),
])
def test_resume_refuses_a_changed_config_and_keeps_the_record(run_copy: Path, config_path: Path, atompaint: CLI,
                                                              flags: list[str], diff: str) -> None:
    before = tree_digest(run_copy)
    code, _, err = atompaint(*train_argv(config_path, run_copy.parent, "--resume", *flags))
    assert code == 2
    line = error_line(err)
    assert diff in line and "--override" in line
    assert tree_digest(run_copy) == before, "config.json and the checkpoints are untouched"


def test_override_applies_and_records_a_change_keeping_the_original(run_copy: Path, config_path: Path,
                                                                    atompaint: CLI) -> None:
    code, _, err = atompaint(*train_argv(config_path, run_copy.parent, "--resume", "--override",
                                         "--set", "head.dropout=0.5", "--epochs", EPOCHS + 1))
    assert code == 0, err
    assert json.loads((run_copy / "config.original.json").read_text())["head"]["dropout"] == 0.2
    assert json.loads((run_copy / "config.json").read_text())["head"]["dropout"] == 0.5
    changes = {c["key"]: c["override"] for c in sessions(run_copy)[-1]["changes"]}
    assert changes == {"head.dropout": True, "trainer.max_epochs": False}
    code, _, err = atompaint(*train_argv(config_path, run_copy.parent, "--resume", "--override",
                                         "--set", "head.hidden=[32]"))
    assert code == 2 and "last.ckpt does not fit this model" in error_line(err)


def test_resume_applies_a_new_learning_rate_and_records_it(run_copy: Path, config_path: Path, atompaint: CLI) -> None:
    code, _, err = atompaint(*train_argv(config_path, run_copy.parent, "--resume", "--epochs", EPOCHS + 1,
                                         "--set", "optim.lr=0.01"))
    assert code == 0, err
    last = load_checkpoint(run_copy / "checkpoints" / "last.ckpt")
    assert last["global_step"] == (EPOCHS + 1) * BATCHES
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.01), "the new rate applies"
    changes = {c["key"]: (c["old"], c["new"]) for c in sessions(run_copy)[-1]["changes"]}
    assert changes == {"optim.lr": (1e-12, 0.01), "trainer.max_epochs": (EPOCHS, EPOCHS + 1)}
    assert json.loads((run_copy / "config.json").read_text())["optim"]["lr"] == 0.01


def test_fast_dev_run_never_writes_into_a_run(run_copy: Path, config_path: Path, atompaint: CLI,
                                              tmp_path: Path) -> None:
    before = tree_digest(run_copy)
    code, out, err = atompaint(*train_argv(config_path, run_copy.parent, "--fast-dev-run", 2))
    assert code == 0, err
    assert "nothing written" in out and tree_digest(run_copy) == before
    code, _, err = atompaint(*train_argv(config_path, tmp_path / "fresh", "--fast-dev-run", 2))
    assert code == 0, err
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_unreadable_checkpoint_names_the_file_and_offers_the_newest_good_one(
        run_copy: Path, config_path: Path, atompaint: CLI, damage: str) -> None:
    last = run_copy / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"not a checkpoint"}[damage])
    code, _, err = atompaint(*train_argv(config_path, run_copy.parent, "--resume"))
    assert code == 2
    line = error_line(err)
    best = next((run_copy / "checkpoints").glob("best-*.ckpt"))
    assert f"checkpoint {last} is" in line
    assert f"the newest readable checkpoint is {best} (epoch 0, step {BATCHES})" in line
    assert f"--resume-from {best}" in line
    code, _, err = atompaint(*train_argv(config_path, run_copy.parent, "--resume-from", last))
    assert code == 2 and f"checkpoint {last} is" in error_line(err)


def atompaint_command() -> list[str]:
    script = Path(sys.executable).parent / "atompaint"
    if not script.is_file():
        pytest.skip("the atompaint console script is not installed next to this Python")
    return [sys.executable, str(script)]


def test_two_process_ddp_on_cpu_trains_checkpoints_and_resumes(config_path: Path, tmp_path: Path) -> None:
    """``--devices 2`` on CPU (gloo): every process checks the run folder, the first records it."""
    argv = [*atompaint_command(), *map(str, train_argv(config_path, tmp_path, "--devices", "2", "--strategy", "ddp",
                                                       "--accelerator", "cpu"))]
    first = subprocess.run([*argv, "--epochs", "1"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "distributed_backend=gloo" in first.stderr
    run_dir = tmp_path / NAME
    last = checkpoint_info(run_dir / "checkpoints" / "last.ckpt")
    assert (last.epoch, last.global_step) == (0, 1), "two processes share the two batches of an epoch"
    second = subprocess.run([*argv, "--epochs", "2", "--resume"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert checkpoint_info(run_dir / "checkpoints" / "last.ckpt").global_step == 2
    assert [s["mode"] for s in sessions(run_dir)] == ["new", "resume"], "metadata written once per session, by rank 0"
    assert json.loads((run_dir / "summary.json").read_text())["global_step"] == 2
