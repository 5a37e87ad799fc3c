"""Fault probes of ``structlayers train``: training state that cannot be lost or confused.

Each test replays a probe (the command, scaled to the tiny MNIST fixture) and checks the clear
error or the preserved data.  The base run is the probe that left ``last.ckpt`` at epoch 0: SGD at
a learning rate of 1e-12, so validation never improves and no best-model checkpoint is written
after the first epoch.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from structlayers.lab.data import DataConfig
from structlayers.lab.training import ModelConfig, TrainConfig, run_training
from structlayers.lightning import OptimConfig, TrainerConfig, checkpoint_info
from structlayers.lightning.checkpoints import load_checkpoint
from tests.faults.probes import CLI, error_line, tree_digest

EPOCHS, BATCHES = 4, 2


def probe_argv(mnist_dir: Path, out: Path, *extra: str) -> list[str]:
    """``structlayers train mnist --model mnist-stack --depth 4 --epochs 4 --limit-train-batches 5
    --batch-size 64 --optimizer sgd --lr 1e-12 --seed 1 --no-progress --out-dir rlast``, on the
    64-image fixture."""
    return ["train", "mnist", "--model", "mnist-stack", "--depth", "4", "--epochs", str(EPOCHS),
            "--limit-train-batches", str(BATCHES), "--batch-size", "16", "--optimizer", "sgd", "--lr", "1e-12",
            "--seed", "1", "--no-progress", "--data-dir", str(mnist_dir), "--val-size", "16",
            "--accelerator", "cpu", "--devices", "1", "--out-dir", str(out), *extra]


@pytest.fixture(scope="module")
def finished_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from structlayers.cli import main

    out = tmp_path_factory.mktemp("runs") / "rlast"
    assert main(probe_argv(mnist_dir, out)) == 0
    return out


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run (a moved or copied run folder, as a user would make)."""
    return Path(shutil.copytree(finished_run, tmp_path / "copy"))


def test_last_checkpoint_holds_the_final_epoch(finished_run: Path) -> None:
    last = checkpoint_info(finished_run / "checkpoints" / "last.ckpt")
    assert (last.epoch, last.global_step) == (EPOCHS - 1, EPOCHS * BATCHES)
    best = [checkpoint_info(p) for p in (finished_run / "checkpoints").glob("best-*.ckpt")]
    assert [b.epoch for b in best] == [0], "validation never improved, so only epoch 0 is a best checkpoint"


def test_resume_continues_after_the_last_epoch_with_new_epochs_and_lr(run_copy: Path, mnist_dir: Path,
                                                                      cli: CLI) -> None:
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--resume", "--epochs", "6", "--lr", "1e-3"))
    assert code == 0, err
    last_path = run_copy / "checkpoints" / "last.ckpt"
    assert f"resuming from {last_path} (epoch {EPOCHS - 1}, step {EPOCHS * BATCHES})" in err
    last = load_checkpoint(run_copy / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (5, 6 * BATCHES)
    group = last["optimizer_states"][0]["param_groups"][0]
    assert group["initial_lr"] == pytest.approx(1e-3), "the new learning rate applies"
    session = [json.loads(line) for line in (run_copy / "history.jsonl").read_text().splitlines()][-1]
    assert session["resumed_from"]["epoch"] == EPOCHS - 1
    assert {c["key"]: (c["old"], c["new"]) for c in session["changes"]} == {
        "optim.lr": (1e-12, 1e-3), "trainer.max_epochs": (EPOCHS, 6)}
    assert json.loads((run_copy / "config.original.json").read_text())["optim"]["lr"] == 1e-12
    assert json.loads((run_copy / "config.json").read_text())["optim"]["lr"] == 1e-3


def test_fast_dev_run_never_writes_into_a_run(run_copy: Path, mnist_dir: Path, cli: CLI, tmp_path: Path) -> None:
    before = tree_digest(run_copy)
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--fast-dev-run", "2"))
    assert code == 0, err
    assert tree_digest(run_copy) == before
    code, _, err = cli(*probe_argv(mnist_dir, tmp_path / "fresh", "--fast-dev-run", "2"))
    assert code == 0, err
    assert not (tmp_path / "fresh").exists()


def test_a_copied_run_resumes_from_the_checkpoint_that_got_furthest(run_copy: Path, mnist_dir: Path,
                                                                    cli: CLI) -> None:
    ckpts = run_copy / "checkpoints"
    (ckpts / "last.ckpt").rename(ckpts / "last-v1.ckpt")  # Lightning's name for a second last.ckpt
    shutil.copy(ckpts / "best-000.ckpt", ckpts / "last.ckpt")  # a stale last.ckpt from the past
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--resume", "--epochs", "5"))
    assert code == 0, err
    assert f"resuming from {ckpts / 'last-v1.ckpt'} (epoch {EPOCHS - 1}, step {EPOCHS * BATCHES})" in err
    assert checkpoint_info(ckpts / "last.ckpt").global_step == 5 * BATCHES


@pytest.mark.parametrize(("flag", "value", "diff"), [
    ("--depth", "6", "model.depth: 4 -> 6"),
    ("--optimizer", "adam", "optim.optimizer: 'sgd' -> 'adam'"),
])
def test_resume_refuses_a_changed_config_and_keeps_the_record(run_copy: Path, mnist_dir: Path, cli: CLI,
                                                              flag: str, value: str, diff: str) -> None:
    before = tree_digest(run_copy)
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--resume", flag, value))
    assert code == 2
    line = error_line(err)
    assert diff in line and "--override" in line
    assert tree_digest(run_copy) == before, "config.json and the checkpoints are untouched"


def test_override_applies_and_records_a_change_keeping_the_original(run_copy: Path, mnist_dir: Path,
                                                                    cli: CLI) -> None:
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--resume", "--override", "--optimizer", "adam",
                                   "--epochs", "5"))
    assert code == 0, err
    assert json.loads((run_copy / "config.original.json").read_text())["optim"]["optimizer"] == "sgd"
    assert json.loads((run_copy / "config.json").read_text())["optim"]["optimizer"] == "adam"
    session = [json.loads(line) for line in (run_copy / "history.jsonl").read_text().splitlines()][-1]
    changes = {c["key"]: c for c in session["changes"]}
    assert changes["optim.optimizer"]["override"] and not changes["trainer.max_epochs"]["override"]
    last = load_checkpoint(run_copy / "checkpoints" / "last.ckpt")
    assert "betas" in last["optimizer_states"][0]["param_groups"][0], "the optimiser is Adam now"


def test_override_cannot_load_weights_of_another_shape(run_copy: Path, mnist_dir: Path, cli: CLI) -> None:
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--resume", "--override", "--depth", "6"))
    assert code == 2
    line = error_line(err)
    assert "last.ckpt does not fit this model" in line and "missing" in line


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_unreadable_checkpoint_names_the_file_and_offers_the_newest_good_one(
        run_copy: Path, mnist_dir: Path, cli: CLI, damage: str) -> None:
    last = run_copy / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"not a checkpoint"}[damage])
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--resume"))
    assert code == 2
    line = error_line(err)
    best = run_copy / "checkpoints" / "best-000.ckpt"
    assert f"checkpoint {last} is" in line
    assert f"the newest readable checkpoint is {best} (epoch 0, step {BATCHES})" in line
    assert f"--resume-from {best}" in line
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--resume-from", last))
    assert code == 2 and f"checkpoint {last} is" in error_line(err)


def test_resume_from_the_offered_checkpoint(run_copy: Path, mnist_dir: Path, cli: CLI) -> None:
    (run_copy / "checkpoints" / "last.ckpt").write_bytes(b"")
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--resume-from", run_copy / "checkpoints" / "best-000.ckpt"))
    assert code == 0, err
    assert checkpoint_info(run_copy / "checkpoints" / "last.ckpt").global_step == EPOCHS * BATCHES


def test_devices_zero_and_a_missing_gpu_are_one_line_errors(mnist_dir: Path, cli: CLI, tmp_path: Path) -> None:
    argv = probe_argv(mnist_dir, tmp_path / "run")
    code, _, err = cli(*argv, "--devices", "0")  # the last --devices wins
    assert code == 2 and "devices must not be 0" in error_line(err)
    if not torch.cuda.is_available():
        code, _, err = cli(*argv, "--accelerator", "gpu")
        assert code == 2 and "no CUDA GPU is available" in error_line(err)
    assert not (tmp_path / "run").exists()


class Interrupt(L.Callback):
    """Sends this process ``signum`` (Ctrl-C: SIGINT) after optimiser step ``step``."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            signal.raise_signal(self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_saves_last_checkpoint_and_resume_finishes_the_run(mnist_dir: Path, tmp_path: Path,
                                                                        signum: int) -> None:
    def config(out: Path, **kwargs: object) -> TrainConfig:
        return TrainConfig(task="mnist", model=ModelConfig("mnist-stack-linear", "acdc:depth=2"),
                           optim=OptimConfig(lr=1e-2),
                           data=DataConfig(data_dir=mnist_dir, batch_size=16, val_size=16), out_dir=out,
                           trainer=TrainerConfig(max_epochs=2, limit_train_batches=3, progress_bar=False,
                                                 accelerator="cpu", devices=1), **kwargs)

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stopped = run_training(config(tmp_path / "run"), callbacks=[Interrupt(4, signum)])
    assert stopped.interrupted and stopped.signal == signum and not (tmp_path / "run" / "metrics.json").exists()
    assert checkpoint_info(tmp_path / "run" / "checkpoints" / "last.ckpt").global_step == 4
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers, "handlers restored"
    resumed = run_training(config(tmp_path / "run", resume=True))
    assert not resumed.interrupted and resumed.metrics["global_step"] == 6


def structlayers_command() -> list[str]:
    script = Path(sys.executable).parent / "structlayers"
    if not script.is_file():
        pytest.skip("the structlayers console script is not installed next to this Python")
    return [sys.executable, str(script)]


def test_two_process_ddp_on_cpu_trains_checkpoints_and_resumes(mnist_dir: Path, tmp_path: Path) -> None:
    """``--devices 2`` on CPU (gloo, Lightning's ``ddp``): the second process used to see the
    first one's config.json and refuse the folder."""
    out = tmp_path / "ddp"
    argv = [*structlayers_command(), "train", "mnist", "--model", "mnist-stack", "--depth", "2",
            "--limit-train-batches", "2", "--limit-val-batches", "1", "--batch-size", "8", "--val-size", "16",
            "--data-dir", str(mnist_dir), "--no-progress", "--accelerator", "cpu", "--devices", "2",
            "--strategy", "ddp", "--out-dir", str(out)]
    first = subprocess.run([*argv, "--epochs", "1"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "distributed_backend=gloo" in first.stderr
    last = checkpoint_info(out / "checkpoints" / "last.ckpt")
    assert (last.epoch, last.global_step) == (0, 2)
    second = subprocess.run([*argv, "--epochs", "2", "--resume"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert checkpoint_info(out / "checkpoints" / "last.ckpt").global_step == 4
    sessions = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [s["mode"] for s in sessions] == ["new", "resume"], "metadata written once per session, by rank 0"
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 4


def test_overwrite_replaces_the_run_and_its_logs(run_copy: Path, mnist_dir: Path, cli: CLI) -> None:
    """``--overwrite`` used to remove the old run after the loggers had made their folders, then
    fail writing the new log: the old run lost and no new one."""
    code, _, err = cli(*probe_argv(mnist_dir, run_copy, "--overwrite", "--epochs", "1"))
    assert code == 0, err
    assert [s["mode"] for s in map(json.loads, (run_copy / "history.jsonl").read_text().splitlines())] == ["overwrite"]
    assert [p.parent.name for p in (run_copy / "csv").glob("version_*/metrics.csv")] == ["version_0"]
    assert checkpoint_info(run_copy / "checkpoints" / "last.ckpt").global_step == BATCHES
    assert (run_copy / "metrics.json").is_file()
