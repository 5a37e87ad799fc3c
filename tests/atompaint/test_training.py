"""Training: YAML configs, a fast_dev_run, checkpoints/CSV/curves under the output dir, resume."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from atompaint.cli import main
from atompaint.training import NeighborLocTask, config_from_dict, load_config, train

warnings.filterwarnings("ignore", message=".*py3nj.*")
warnings.filterwarnings("ignore", category=UserWarning, module="lightning")

EXPERIMENTS = Path(__file__).parents[2] / "experiments" / "neighbor_loc"
L = 7


class PairDataModule(pl.LightningDataModule):
    """Synthetic view pairs in the ``(view_a, view_b, label)`` format: view B carries a bright slab
    on the face of the grid given by the label, so the task is learnable."""

    num_classes = 6

    def __init__(self, n: int = 16, batch_size: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        label = torch.randint(0, 6, (n,), generator=g)
        view_a = torch.rand(n, 2, L, L, L, generator=g) * 0.1
        view_b = torch.rand(n, 2, L, L, L, generator=g) * 0.1
        for i, k in enumerate(label.tolist()):
            axis, side = divmod(k, 2)
            index = [slice(None)] * 3
            index[axis] = -1 if side else 0
            view_b[(i, 0, *index)] += 1.0
        self.data = TensorDataset(view_a, view_b, label)
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch_size)


def tiny_config(**trainer) -> dict:
    return {
        "name": "tiny",
        "task": "neighbor-loc",
        "encoder": {"architecture": "shallow", "width": 1, "max_channels": 2, "band_limit": 1, "grid_size": 1},
        "head": {"hidden": [16], "layer": "acdc", "depth": 2},
        "data": {"structure_dir": "unused", "image": {"length_voxels": L, "channels": [["C"], ["*"]]}, "batch_size": 4},
        "optim": {"lr": 0.01},
        "trainer": {"accelerator": "cpu", "devices": 1, "log_every_n_steps": 1, **trainer},
    }


def test_fast_dev_run_two_batches(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(
        config_from_dict(tiny_config()), output_dir=tmp_path / "runs", fast_dev_run=2,
        datamodule=PairDataModule(), enable_progress_bar=False,
    )
    assert "train/loss" in result.metrics and "val/acc" in result.metrics
    assert not (tmp_path / "lightning_logs").exists()


def test_training_writes_logs_checkpoints_curves_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    config = config_from_dict(tiny_config(max_epochs=2, limit_train_batches=2, limit_val_batches=2))
    result = train(config, output_dir=out, datamodule=PairDataModule(), enable_progress_bar=False)
    assert result.log_dir.parent == out / "tiny"
    assert (result.log_dir / "metrics.csv").is_file()
    assert result.curves is not None and result.curves.stat().st_size > 1000
    assert result.last_checkpoint is not None and result.last_checkpoint.is_file()
    assert (result.log_dir / "summary.json").is_file()
    assert not (tmp_path / "lightning_logs").exists()

    task = NeighborLocTask.load_from_checkpoint(result.last_checkpoint)
    assert task.config.head.layer == "acdc"
    a, b, _ = next(iter(PairDataModule().val_dataloader()))
    assert task.eval()(a, b).shape == (4, 6)

    config.trainer.max_epochs = 3
    resumed = train(config, output_dir=out, resume="last", datamodule=PairDataModule(), enable_progress_bar=False)
    assert resumed.log_dir.parent == result.log_dir.parent and resumed.log_dir != result.log_dir
    assert (result.log_dir / "metrics.csv").read_text().count("\n") > 2, "the first run's log was lost"
    checkpoint = torch.load(resumed.last_checkpoint, map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 2
    with pytest.raises(FileNotFoundError):
        train(config, output_dir=tmp_path / "elsewhere", resume="last", datamodule=PairDataModule())


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        config_from_dict({**tiny_config(), "head": {"hiden": [3]}})
    with pytest.raises(ValueError, match="task"):
        config_from_dict({**tiny_config(), "task": "folding"})
    bad = tiny_config()
    bad["encoder"] = {**bad["encoder"], "input_size": 9}
    with pytest.raises(ValueError, match="encoder expects"):
        config_from_dict(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_experiment_configs_load(path):
    config = load_config(path)
    assert config.task == "neighbor-loc"
    assert config.encoder.input_size == config.data.image.length_voxels


def test_seed004_config_is_the_chosen_model():
    config = load_config(EXPERIMENTS / "seed004_gamma_log16.yaml")
    enc = config.encoder
    assert (enc.architecture, enc.block, enc.schedule, enc.max_channels, enc.bottleneck) == ("resnet", "gamma", "log", 16, None)


def test_train_cli_rejects_wrong_task(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    assert main(["train", "lba", "--config", str(path)]) == 2
    assert main(["train", "neighbor-loc", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert os.listdir(tmp_path) == ["c.yaml"]
