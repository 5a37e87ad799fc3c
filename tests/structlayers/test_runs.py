"""structlayers.lightning: checkpoints chosen by recorded progress, atomic writes, run folders and their
configuration checks, last.ckpt whenever training stops (and only then), optimiser states rewritten
for new settings, and up-front memory checks."""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from structlayers.lightning import (
    CheckpointError,
    OptimConfig,
    ResumePolicy,
    RunConflictError,
    RunDirectory,
    newest_checkpoint,
    retarget_optimizer,
)
from structlayers.lightning.callbacks import RunCheckpoints, build_trainer, fit_run
from structlayers.lightning.checkpoints import RUN_KEY, atomic_save, check_state_dict, checkpoint_info
from structlayers.lightning.directory import ABSENT, ConfigChange, diff_configs
from structlayers.lightning.resume import OPTIM_KEY, optim_record
from structlayers.utils.memory import AllocationTooLargeError, check_allocation


def fake_checkpoint(path: Path, epoch: int, step: int, config: dict | None = None) -> Path:
    ckpt = {"epoch": epoch, "global_step": step, "state_dict": {"w": torch.zeros(2)}}
    if config is not None:
        ckpt[RUN_KEY] = {"config": config}
    torch.save(ckpt, path)
    return path


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), min_size=1, max_size=5, unique=True),
       st.randoms(use_true_random=False))
def test_newest_checkpoint_goes_by_recorded_progress_not_names(progress: list[tuple[int, int]], rng) -> None:
    names = ["last.ckpt", "last-v1.ckpt", "best-000.ckpt", "epoch=9.ckpt", "z.ckpt"][: len(progress)]
    rng.shuffle(names)
    with tempfile.TemporaryDirectory() as folder:
        for name, (epoch, step) in zip(names, progress):
            fake_checkpoint(Path(folder) / name, epoch, step)
        chosen = newest_checkpoint(folder)
    best = max(progress, key=lambda p: (p[1], p[0]))
    assert (chosen.epoch, chosen.global_step) == best


def test_last_wins_a_tie_and_partial_writes_are_ignored(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path / "best-003.ckpt", 3, 40)
    fake_checkpoint(tmp_path / "last.ckpt", 3, 40)
    (tmp_path / ".last.ckpt.123.partial").write_bytes(b"half")
    assert newest_checkpoint(tmp_path).path.name == "last.ckpt"


def test_unreadable_checkpoints_are_one_line_errors_with_an_offer(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path / "best-001.ckpt", 1, 10)
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        newest_checkpoint(tmp_path, use="use {path}")
    message = str(err.value)
    assert "\n" not in message and "last.ckpt is empty" in message
    assert f"the newest readable checkpoint is {tmp_path / 'best-001.ckpt'} (epoch 1, step 10); use " in message
    torch.save({"weights": torch.zeros(1)}, tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError, match="is not a training checkpoint"):
        checkpoint_info(tmp_path / "last.ckpt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        newest_checkpoint(tmp_path / "missing")


class Unpicklable:
    def __reduce__(self) -> tuple:
        raise RuntimeError("disk full")


def test_atomic_save_keeps_the_previous_file_when_a_write_fails(tmp_path: Path) -> None:
    target = fake_checkpoint(tmp_path / "last.ckpt", 1, 10)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"epoch": 2, "global_step": 20, "state_dict": {}, "x": Unpicklable()}, target)
    assert checkpoint_info(target).global_step == 10
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_check_state_dict_lists_what_does_not_fit() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    state = {**model.state_dict(), "0.weight": torch.zeros(5, 4), "extra": torch.zeros(1)}
    del state["1.bias"]
    with pytest.raises(CheckpointError, match=r"ckpt does not fit this model: 1 missing \(1.bias\); "
                                              r"1 unexpected \(extra\); 1 of another shape"):
        check_state_dict(model, state, "ckpt")


def test_diff_configs_flattens_and_ignores() -> None:
    old = {"optim": {"lr": 1e-3, "optimizer": "adam"}, "out_dir": "a", "model": {"depth": 4}}
    new = {"optim": {"lr": 1e-2, "optimizer": "adam"}, "out_dir": "b", "model": {"depth": 4, "width": 2}}
    assert diff_configs(old, new, ignore=("out_dir",)) == [ConfigChange("model.width", ABSENT, 2),
                                                          ConfigChange("optim.lr", 1e-3, 1e-2)]
    ok, bad = ResumePolicy(changeable=("optim.*",)).split(diff_configs(old, new, ignore=("out_dir",)))
    assert [c.key for c in ok] == ["optim.lr"] and [c.key for c in bad] == ["model.width"]


def test_run_directory_plans_without_writing_and_records_sessions(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "a" / "b" / "run", outputs=("metrics.json",))
    policy = ResumePolicy(changeable=("lr",), ignored=("where",))
    plan = run.plan({"lr": 1, "depth": 4, "where": "x"}, policy=policy)
    assert plan.mode == "new" and not (tmp_path / "a").exists(), "planning writes nothing"
    run.record(plan, argv=["train"])
    assert json.loads((run.path / "config.json").read_text()) == {"lr": 1, "depth": 4, "where": "x"}
    with pytest.raises(FileExistsError, match="already holds a run"):
        run.plan({"lr": 1, "depth": 4}, policy=policy)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run.plan({"lr": 1, "depth": 4}, resume=True, policy=policy)

    run.checkpoints.mkdir()
    fake_checkpoint(run.checkpoints / "last.ckpt", 2, 20, {"lr": 1, "depth": 4, "where": "x"})
    with pytest.raises(RunConflictError, match="depth: 4 -> 6") as err:
        run.plan({"lr": 2, "depth": 6, "where": "y"}, resume=True, policy=policy)
    assert "lr" not in str(err.value) and "where" not in str(err.value)
    plan = run.plan({"lr": 2, "depth": 4, "where": "y"}, resume=True, policy=policy)
    assert [str(c) for c in plan.changes] == ["lr: 1 -> 2"] and plan.checkpoint.global_step == 20
    run.record(plan, argv=["train", "--resume"])
    assert json.loads((run.path / "config.original.json").read_text())["lr"] == 1
    assert json.loads((run.path / "config.json").read_text())["lr"] == 2
    plan = run.plan({"lr": 2, "depth": 6}, resume=True, override=True, policy=policy)
    assert [str(c) for c in plan.overridden] == ["depth: 4 -> 6"]
    run.record(plan)
    assert json.loads((run.path / "config.original.json").read_text())["lr"] == 1, "the original is kept once"
    sessions = run.history()
    assert [s["mode"] for s in sessions] == ["new", "resume", "resume"]
    assert sessions[2]["changes"][0] == {"key": "depth", "old": 4, "new": 6, "override": True}

    (run.path / "metrics.json").write_text("{}")
    (run.path / "notes.txt").write_text("mine")
    run.record(run.plan({"lr": 3}, overwrite=True, policy=policy))
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "history.jsonl", "notes.txt"]


def test_run_checkpoints_pickles_for_spawned_processes(tmp_path: Path) -> None:
    keeper = pickle.loads(pickle.dumps(RunCheckpoints(RunDirectory(tmp_path))))
    assert type(keeper) is RunCheckpoints and keeper.last_path == tmp_path / "checkpoints" / "last.ckpt"


class Tiny(L.LightningModule):
    """Three steps an epoch; raises in step ``crash_at`` (a global step), if given."""

    def __init__(self, crash_at: int | None = None) -> None:
        super().__init__()
        self.layer, self.crash_at = torch.nn.Linear(2, 1), crash_at

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.global_step == self.crash_at:
            raise RuntimeError("a failing step")
        return self.layer(batch[0]).square().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(6, 2)), batch_size=2)


def tiny_run(tmp_path: Path, module: Tiny, **trainer: object) -> RunCheckpoints:
    keeper = RunCheckpoints(RunDirectory(tmp_path), graceful_interrupt=False)
    fit_run(build_trainer(accelerator="cpu", devices=1, callbacks=[keeper], logger=False, enable_progress_bar=False,
                          enable_model_summary=False, default_root_dir=tmp_path, **trainer), module, keeper)
    return keeper


def test_last_checkpoint_when_training_stops_mid_epoch(tmp_path: Path) -> None:
    keeper = tiny_run(tmp_path, Tiny(), max_steps=4)
    assert checkpoint_info(keeper.last_path).global_step == 4
    assert sorted(p.name for p in keeper.last_path.parent.iterdir()) == ["last.ckpt"]


def test_a_failing_step_leaves_the_last_good_checkpoint(tmp_path: Path) -> None:
    """Unlike ModelCheckpoint(save_on_exception=True), only SIGTERM saves on an exception."""
    with pytest.raises(RuntimeError, match="a failing step"):
        tiny_run(tmp_path, Tiny(crash_at=4), max_epochs=3)
    assert checkpoint_info(tmp_path / "checkpoints" / "last.ckpt").global_step == 3, "the end of epoch 0"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]


def optimizer_checkpoint(optim: OptimConfig, total: int, steps: int) -> tuple[dict, torch.nn.Parameter]:
    """A checkpoint's optimiser part after ``steps`` real steps of ``optim`` planned over ``total``."""
    param = torch.nn.Parameter(torch.ones(3))
    configured = optim.configure([param], total)
    opt = configured if isinstance(configured, torch.optim.Optimizer) else configured["optimizer"]
    sched = None if isinstance(configured, torch.optim.Optimizer) else configured["lr_scheduler"]["scheduler"]
    for _ in range(steps):
        param.grad = torch.ones(3)
        opt.step()
        if sched is not None and optim.schedule != "plateau":
            sched.step()
    if optim.schedule == "plateau":
        for _ in range(optim.plateau_patience + 2):
            sched.step(1.0)  # a metric that never improves: one reduction
    return {"global_step": steps, "optimizer_states": [opt.state_dict()],
            "lr_schedulers": [] if sched is None else [sched.state_dict()],
            OPTIM_KEY: optim_record(optim, total)}, param


def test_unchanged_settings_leave_the_checkpoint_exact() -> None:
    ckpt, _ = optimizer_checkpoint(OptimConfig(), 20, 5)
    before = pickle.dumps(ckpt)
    assert retarget_optimizer(ckpt, OptimConfig(), 20) == []
    assert pickle.dumps(ckpt) == before


def test_a_new_lr_and_length_follow_the_new_schedule_from_the_current_step() -> None:
    ckpt, param = optimizer_checkpoint(OptimConfig(lr=1e-3), 20, 5)
    notes = retarget_optimizer(ckpt, OptimConfig(lr=1e-2), 40)
    assert any("lr: 0.001 -> 0.01" in n for n in notes) and any("over 40 steps (was 20)" in n for n in notes)
    reference, _ = optimizer_checkpoint(OptimConfig(lr=1e-2), 40, 5)
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["lr"] == pytest.approx(reference["optimizer_states"][0]["param_groups"][0]["lr"])
    assert ckpt["lr_schedulers"][0]["T_max"] == 40 and ckpt["lr_schedulers"][0]["last_epoch"] == 5
    assert "exp_avg" in ckpt["optimizer_states"][0]["state"][0], "Adam's moments are kept"
    opt = OptimConfig(lr=1e-2).build_optimizer([param])
    opt.load_state_dict(ckpt["optimizer_states"][0])


def test_another_optimizer_resets_its_state_and_loads() -> None:
    """The probe: an Adam run resumed with ``--optimizer sgd`` failed with ``error: 'momentum'``."""
    ckpt, param = optimizer_checkpoint(OptimConfig(optimizer="adam"), 20, 5)
    notes = retarget_optimizer(ckpt, OptimConfig(optimizer="sgd", lr=0.1), 20)
    assert "optimizer state reset (adam -> sgd)" in notes
    sgd = OptimConfig(optimizer="sgd", lr=0.1).build_optimizer([param])
    sgd.load_state_dict(ckpt["optimizer_states"][0])
    param.grad = torch.ones(3)
    sgd.step()
    assert sgd.param_groups[0]["momentum"] == 0.9


def test_plateau_keeps_the_reductions_it_made() -> None:
    plateau = OptimConfig(schedule="plateau", lr=1e-2, plateau_patience=1)
    ckpt, _ = optimizer_checkpoint(plateau, 20, 3)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(5e-3)
    retarget_optimizer(ckpt, OptimConfig(schedule="plateau", lr=1e-1, plateau_patience=1), 20)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(5e-2)


def test_allocations_beyond_the_available_memory_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("structlayers.utils.memory.available_bytes", lambda device="cpu": 2**30)
    check_allocation(2**29, "half a GiB")
    with pytest.raises(AllocationTooLargeError, match=r"a probe needs about 2 GiB, more than the 1 GiB"):
        check_allocation(2**31, "a probe")
