"""Lightning sanity runs: a two-batch fast_dev_run of each run, outputs, exact resume, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from structlayers.cli import main
from structlayers.configs import to_dict
from structlayers.lab.data import DataConfig, write_cifar_batch
from structlayers.lab.training import ModelConfig, TrainConfig, run_training
from structlayers.lab.training.run import plan_run
from structlayers.lightning import OptimConfig, RunConflictError, TrainerConfig
from structlayers.lightning.checkpoints import RUN_KEY
from structlayers.lightning.curves import read_epoch_metrics, run_csv_files


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(folder / name, rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 8))
    return folder.parent


SANITY_RUNS = {
    "mnist-stack-acdc32": ("mnist", ModelConfig("mnist-stack", "acdc:depth=32")),
    "mnist-stack-linear-acdc12": ("mnist", ModelConfig("mnist-stack-linear", "acdc:depth=12")),
    "cifar-resnet18-dense": ("cifar10", ModelConfig("resnet18", model_options={"width": 16})),
    "cifar-resnet18-shortcuts": ("cifar10", ModelConfig("resnet18", "acdc:depth=12", replace=True,
                                                        targets=["pointwise"], model_options={"width": 16})),
    "cifar-resnet18-all": ("cifar10", ModelConfig("resnet18", "acdc:depth=12", replace=True,
                                                  targets=["pointwise", "separable"], skip_first=1,
                                                  model_options={"width": 16})),
}


@pytest.mark.parametrize("run", sorted(SANITY_RUNS))
def test_fast_dev_run_of_each_sanity_run(run: str, mnist_dir: Path, cifar_dir: Path, tmp_path: Path) -> None:
    task, model = SANITY_RUNS[run]
    config = TrainConfig(
        task=task, model=model,
        data=DataConfig(data_dir=mnist_dir if task == "mnist" else cifar_dir, batch_size=8, val_size=16),
        out_dir=tmp_path, trainer=TrainerConfig(fast_dev_run=2, progress_bar=False, accelerator="cpu", devices=1),
    )
    result = run_training(config)
    m = result.metrics
    assert m["global_step"] == 2 and 0.0 <= m["val_acc"] <= 1.0
    assert m["collapsed"]["prediction_agreement"] == 1.0
    assert m["params"] == sum(p.numel() for p in result.model.parameters())
    if model.replace:
        assert m["replaced"]["params_after"] == m["params"] < m["replaced"]["params_before"]
    assert not any(tmp_path.iterdir()), "a fast_dev_run smoke test writes nothing"


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.should_stop = True


def tiny_config(mnist_dir: Path, out: Path, **kwargs) -> TrainConfig:
    return TrainConfig(
        task="mnist", model=ModelConfig("mnist-stack-linear", "acdc:depth=2"), optim=OptimConfig(lr=1e-2),
        data=DataConfig(data_dir=mnist_dir, batch_size=16, val_size=16), out_dir=out,
        trainer=TrainerConfig(max_epochs=3, progress_bar=False, accelerator="cpu", devices=1), **kwargs,
    )


def test_outputs_and_exact_resume(mnist_dir: Path, tmp_path: Path) -> None:
    full = run_training(tiny_config(mnist_dir, tmp_path / "full"))
    for name in ("metrics.json", "curves.png", "config.json", "checkpoints/last.ckpt", "csv/version_0/metrics.csv"):
        assert (tmp_path / "full" / name).is_file(), name
    assert any((tmp_path / "full" / "tensorboard").iterdir())
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["best_val_acc"] is not None
    assert metrics["collapsed"]["prediction_agreement"] == 1.0
    curves = read_epoch_metrics(*run_csv_files(tmp_path / "full" / "csv"))
    assert sorted(curves["val/acc"]) == [0, 1, 2] and sorted(curves["train/loss"]) == [0, 1, 2]

    with pytest.raises(FileExistsError, match="already holds a run"):
        run_training(tiny_config(mnist_dir, tmp_path / "full"))
    with pytest.raises(FileNotFoundError, match="holds no run"):
        run_training(tiny_config(mnist_dir, tmp_path / "none", resume=True))

    run_training(tiny_config(mnist_dir, tmp_path / "stopped"), callbacks=[StopAfterFirstEpoch()])
    resumed = run_training(tiny_config(mnist_dir, tmp_path / "stopped", resume=True))
    assert resumed.metrics["global_step"] == full.metrics["global_step"]
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, name
    assert resumed.metrics["val_acc"] == full.metrics["val_acc"]
    sessions = run_csv_files(tmp_path / "stopped" / "csv")
    assert len(sessions) == 2
    assert sorted(read_epoch_metrics(sessions[0])["val/acc"]) == [0]
    assert sorted(read_epoch_metrics(*sessions)["val/acc"]) == [0, 1, 2]


def test_train_cli(mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "mnist", "--layer", "acdc", "--depth", "4", "--data-dir", str(mnist_dir), "--batch-size", "8",
            "--val-size", "16", "--fast-dev-run", "2", "--out-dir", str(tmp_path), "--no-progress",
            "--accelerator", "cpu", "--devices", "1"]
    assert main(argv) == 0
    assert '"val_acc"' in capsys.readouterr().out
    missing = ["train", "cifar10", "--data-dir", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "run")]
    assert main(missing) == 2
    assert "no CIFAR-10 data" in capsys.readouterr().err
    assert not (tmp_path / "run").exists(), "a run that cannot load its data leaves no folder behind"


@pytest.mark.parametrize("old_model, model", [
    ({"layer": "acdc", "depth": 12, "replace": "acdc", "init": "random"},
     ModelConfig("resnet18", "acdc:depth=12", replace=True, targets=["pointwise"])),
    ({"layer": "acdc", "depth": None, "replace": None, "init": "random"}, ModelConfig("resnet18")),
])
def test_resume_reads_a_run_recorded_in_the_old_vocabulary(old_model: dict, model: ModelConfig,
                                                            tmp_path: Path) -> None:
    """A run folder written before ``replace`` became a switch and ``init: random`` became
    ``scratch`` resumes without --override, with a one-line deprecation warning."""
    config = TrainConfig(task="cifar10", model=model, out_dir=tmp_path)
    recorded = to_dict(config)
    recorded["model"] = {**recorded["model"], **old_model}
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    (tmp_path / "checkpoints").mkdir()
    torch.save({"epoch": 1, "global_step": 10, "state_dict": {}, RUN_KEY: {"config": recorded}},
               tmp_path / "checkpoints" / "last.ckpt")
    with pytest.warns(FutureWarning, match="deprecated words") as caught:
        plan = plan_run(replace(config, resume=True))
    assert plan.mode == "resume" and not plan.changes, "nothing differs once the old words are read"
    assert ["\n" not in str(w.message) for w in caught] == [True]
    recorded["model"]["skip_first"] = 1
    torch.save({"epoch": 1, "global_step": 10, "state_dict": {}, RUN_KEY: {"config": recorded}},
               tmp_path / "checkpoints" / "last.ckpt")
    with pytest.warns(FutureWarning), pytest.raises(RunConflictError, match="model.skip_first: 1 -> 0"):
        plan_run(replace(config, resume=True))
