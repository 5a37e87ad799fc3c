"""Training: YAML configs, a fast_dev_run, checkpoints/CSV/curves under the output dir, resume, the CLI."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

import atompaint.training.run
from atompaint.cli import main
from atompaint.encoders import EncoderConfig
from atompaint.heads import HeadConfig
from atompaint.tasks.lba import FinetuneConfig, LBADataConfig
from atompaint.tasks.neighbor_loc import NeighborLocConfig, NeighborLocDataConfig, NeighborLocTask
from atompaint.tasks.residue_env import ResidueEnvDataConfig
from atompaint.training import RunResult, config_from_dict, load_config, train
from atompaint.voxelize import ImageParams
from structlayers.configs import ConfigError, to_dict
from structlayers.lightning import CheckpointError, OptimConfig, RunConflictError, TrainerConfig, checkpoint_info
from structlayers.lightning.checkpoints import load_checkpoint
from tests.faults.probes import tree_digest
from tests.faults.test_training_faults import Interrupt

warnings.filterwarnings("ignore", message=".*py3nj.*")
warnings.filterwarnings("ignore", category=UserWarning, module="lightning")

EXPERIMENTS = Path(__file__).parents[2] / "experiments" / "neighbor_loc"
DATA = Path(__file__).parent / "data"
EXPERIMENT_CONFIGS = sorted((Path(__file__).parents[2] / "experiments").glob("*/*.yaml"))
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
        "trainer": {"accelerator": "cpu", "devices": 1, "log_every_n_steps": 1, "progress_bar": False, **trainer},
    }


def frozen_config(**trainer) -> dict:
    """:func:`tiny_config` trained by SGD at a learning rate of 1e-12: the weights stay put, so
    validation never improves after the first epoch."""
    return {**tiny_config(**trainer), "optim": {"optimizer": "sgd", "lr": 1e-12}}


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_fast_dev_run_two_batches_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = config_from_dict(tiny_config(fast_dev_run=2))
    result = train(config, out_dir=tmp_path / "runs", datamodule=PairDataModule())
    assert "train/loss" in result.metrics and "val/acc" in result.metrics
    assert result.last_checkpoint is None and result.log_dir is None
    assert os.listdir(tmp_path) == []


def test_training_writes_logs_checkpoints_curves_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    config = config_from_dict(tiny_config(max_epochs=2, limit_train_batches=2, limit_val_batches=2))
    result = train(config, out_dir=out, datamodule=PairDataModule())
    run_dir = out / "tiny"
    assert result.run_dir == run_dir and result.log_dir == run_dir / "csv" / "version_0"
    assert (result.log_dir / "metrics.csv").is_file()
    assert result.curves == run_dir / "curves.png" and result.curves.stat().st_size > 1000
    assert result.last_checkpoint == run_dir / "checkpoints" / "last.ckpt"
    assert result.best_checkpoint is not None and result.best_checkpoint.parent == run_dir / "checkpoints"
    assert config_from_dict(json.loads((run_dir / "config.json").read_text())) == config
    assert json.loads((run_dir / "summary.json").read_text())["global_step"] == 4
    assert [s["mode"] for s in history(run_dir)] == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["runs"], "nothing outside the run folder"

    task = NeighborLocTask.load_from_checkpoint(result.last_checkpoint)
    assert task.config.head.layer.name == "acdc"
    a, b, _ = next(iter(PairDataModule().val_dataloader()))
    assert task.eval()(a, b).shape == (4, 6)

    with pytest.raises(FileExistsError, match="already holds a run; pass --resume"):
        train(config, out_dir=out, datamodule=PairDataModule())
    config.trainer.max_epochs = 3
    resumed = train(config, out_dir=out, resume=True, datamodule=PairDataModule())
    assert resumed.log_dir == run_dir / "csv" / "version_1"
    assert (result.log_dir / "metrics.csv").read_text().count("\n") > 2, "the first session's log was kept"
    assert checkpoint_info(resumed.last_checkpoint).epoch == 2
    assert [s["mode"] for s in history(run_dir)] == ["new", "resume"]
    with pytest.raises(FileNotFoundError, match="holds no run to resume"):
        train(config, out_dir=tmp_path / "elsewhere", resume=True, datamodule=PairDataModule())
    again = train(config, out_dir=out, overwrite=True, datamodule=PairDataModule())
    assert again.log_dir == run_dir / "csv" / "version_0" and [s["mode"] for s in history(run_dir)] == ["overwrite"]


def test_last_checkpoint_is_written_every_epoch_when_validation_stops_improving(tmp_path):
    """Lightning's ``ModelCheckpoint(save_last=True)`` wrote ``last.ckpt`` only with a new best:
    here it stayed at epoch 0 and the final weights were never saved."""
    config = config_from_dict(frozen_config(max_epochs=3, limit_train_batches=2, limit_val_batches=2))
    result = train(config, out_dir=tmp_path, datamodule=PairDataModule())
    best = [checkpoint_info(p) for p in (result.run_dir / "checkpoints").glob("best-*.ckpt")]
    assert [b.epoch for b in best] == [0], "validation improved after epoch 0: the probe lost its point"
    last = checkpoint_info(result.last_checkpoint)
    assert (last.epoch, last.global_step) == (2, 6)


def test_resume_applies_a_new_learning_rate_and_records_it(tmp_path):
    config = config_from_dict(frozen_config(max_epochs=2, limit_train_batches=2, limit_val_batches=1))
    first = train(config, out_dir=tmp_path, datamodule=PairDataModule())
    weights = load_checkpoint(first.last_checkpoint)["state_dict"]
    config.optim.lr, config.trainer.max_epochs = 0.05, 3
    config.data = dataclasses.replace(config.data, num_workers=1)
    resumed = train(config, out_dir=tmp_path, resume=True, datamodule=PairDataModule())
    last = load_checkpoint(resumed.last_checkpoint)
    assert (last["epoch"], last["global_step"]) == (2, 6)
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.05), "the new rate applies"
    assert any(not torch.equal(weights[k], v) for k, v in last["state_dict"].items()), "and the weights move"
    changes = {c["key"]: (c["old"], c["new"]) for c in history(resumed.run_dir)[-1]["changes"]}
    assert changes == {"optim.lr": (1e-12, 0.05), "trainer.max_epochs": (2, 3), "data.num_workers": (0, 1)}
    assert json.loads((resumed.run_dir / "config.original.json").read_text())["optim"]["lr"] == 1e-12
    assert json.loads((resumed.run_dir / "config.json").read_text())["optim"]["lr"] == 0.05


def test_resume_refuses_another_model_unless_overridden(tmp_path):
    config = config_from_dict(frozen_config(max_epochs=1, limit_train_batches=2, limit_val_batches=1))
    first = train(config, out_dir=tmp_path, datamodule=PairDataModule())
    before = tree_digest(first.run_dir)
    changed = dataclasses.replace(config, head=dataclasses.replace(config.head, dropout=0.5), seed=3)
    with pytest.raises(RunConflictError) as err:
        train(changed, out_dir=tmp_path, resume=True, datamodule=PairDataModule())
    assert "head.dropout: 0.2 -> 0.5; seed: 0 -> 3" in str(err.value) and "--override" in str(err.value)
    assert "\n" not in str(err.value)
    assert tree_digest(first.run_dir) == before, "a refused session changes nothing"

    changed.trainer.max_epochs = 2
    train(changed, out_dir=tmp_path, resume=True, override=True, datamodule=PairDataModule())
    changes = {c["key"]: c["override"] for c in history(first.run_dir)[-1]["changes"]}
    assert changes == {"head.dropout": True, "seed": True, "trainer.max_epochs": False}
    assert json.loads((first.run_dir / "config.original.json").read_text())["head"]["dropout"] == 0.2
    assert json.loads((first.run_dir / "config.json").read_text())["head"]["dropout"] == 0.5

    wider = dataclasses.replace(changed, head=dataclasses.replace(changed.head, hidden=[32]))
    with pytest.raises(CheckpointError, match=r"last.ckpt does not fit this model: .* of another shape"):
        train(wider, out_dir=tmp_path, resume=True, override=True, datamodule=PairDataModule())


def test_an_interrupt_saves_last_checkpoint_and_resume_finishes_the_run(tmp_path):
    config = config_from_dict(tiny_config(max_epochs=2, limit_train_batches=3, limit_val_batches=1))
    stopped = train(config, out_dir=tmp_path, datamodule=PairDataModule(), callbacks=[Interrupt(4, signal.SIGINT)])
    assert stopped.interrupted and stopped.signal == signal.SIGINT
    assert checkpoint_info(stopped.last_checkpoint).global_step == 4
    assert not (stopped.run_dir / "summary.json").exists()
    resumed = train(config, out_dir=tmp_path, resume=True, datamodule=PairDataModule())
    assert not resumed.interrupted and checkpoint_info(resumed.last_checkpoint).global_step == 6


def test_real_data_logs_how_view_b_was_drawn(tmp_path, monkeypatch):
    """With the real DataModule each epoch records the share of redrawn and fallback B views."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATOMPAINT_CACHE", str(tmp_path / "cache"))
    structures = tmp_path / "structures"
    structures.mkdir()
    for name in ["2xdgA", "2cviA"]:
        shutil.copy(DATA / f"{name}.pdb.gz", structures)
    values = tiny_config(max_epochs=1)
    values["data"] = {**values["data"], "structure_dir": str(structures), "train_size": 8, "val_size": 4,
                      "val_fraction": 0.5, "b_max_draws": 3}
    result = train(config_from_dict(values), out_dir=tmp_path / "runs")
    rows = list(csv.DictReader((result.log_dir / "metrics.csv").open()))
    for stage in ("train", "val"):
        logged = [float(r[f"{stage}/b_draws"]) for r in rows if r.get(f"{stage}/b_draws")]
        assert len(logged) == 1 and 1.0 <= logged[0] <= 3.0
        redrawn, fallback = (float(next(r[f"{stage}/{k}"] for r in rows if r.get(f"{stage}/{k}")))
                             for k in ("b_redrawn", "b_fallback"))
        assert 0.0 <= fallback <= redrawn <= 1.0

    # The checkpoint is evaluated on the same validation set, at its own and at other paddings.
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(result.last_checkpoint), "--padding", "2", "--padding", "0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    own, other = report["results"]
    assert (own["padding_A"], other["padding_A"], own["n"]) == (2.0, 0.0, 4)
    assert own["scores"]["real"]["accuracy"] == pytest.approx(float(rows[-1].get("val/acc") or next(
        r["val/acc"] for r in reversed(rows) if r.get("val/acc"))), abs=1e-6)
    assert set(own["scores"]) == {"real", "a_empty", "a_shuffled", "b_empty", "b_shuffled"}
    assert set(own["rules"]) == {"a_centroid", "b_centroid", "a_minus_b_centroid"}
    assert own["chance"] == pytest.approx(1 / 6) and own["construction"] == "dense-b"
    controls = [v["accuracy"] for k, v in own["scores"].items() if k != "real"]
    controls += [v["accuracy"] for v in own["rules"].values()]
    assert own["lift"] == pytest.approx(own["scores"]["real"]["accuracy"] - max(controls))
    assert 0.0 <= own["b_empty"] <= own["b_sparse"] <= 1.0
    assert main(["evaluate", str(tmp_path / "missing.ckpt")]) == 2


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        config_from_dict({**tiny_config(), "head": {"hiden": [3]}})
    with pytest.raises(ValueError, match="task"):
        config_from_dict({**tiny_config(), "task": "folding"})
    with pytest.raises(ConfigError, match="optim: unknown key.*scheduler"):
        config_from_dict({**tiny_config(), "optim": {"scheduler": "plateau"}})
    with pytest.raises(ConfigError, match="head.layer: layer 'dense' cannot be stacked"):
        config_from_dict({**tiny_config(), "head": {"layer": "dense", "depth": 12}})
    with pytest.raises(ConfigError, match="data.image.length_voxels: expected an integer"):
        config_from_dict({**tiny_config(), "data": {"image": {"length_voxels": "big"}}})
    bad = tiny_config()
    bad["encoder"] = {**bad["encoder"], "input_size": 9}
    with pytest.raises(ValueError, match="encoder expects"):
        config_from_dict(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml")


def test_defaults_are_declared_once():
    """A section left out, or a key left out of a section, keeps the run config's declared default:
    AdamW with the plateau schedule, the default image, the encoder reading the data's input."""
    minimal = config_from_dict({"name": "m", "task": "neighbor-loc", "encoder": {}})
    assert (minimal.optim.optimizer, minimal.optim.schedule) == ("adamw", "plateau")
    assert minimal.data.image == ImageParams() and minimal.data == NeighborLocDataConfig()
    assert minimal.head == HeadConfig() and minimal.trainer == TrainerConfig() and minimal.seed == 0
    assert (minimal.encoder.in_channels, minimal.encoder.input_size) == (ImageParams().num_channels,
                                                                         ImageParams().length_voxels)
    assert EncoderConfig().input_size == ImageParams().length_voxels
    partial = config_from_dict({"name": "m", "task": "neighbor-loc", "encoder": {}, "optim": {"lr": 0.01}})
    assert partial.optim == OptimConfig(optimizer="adamw", schedule="plateau", lr=0.01)


@pytest.mark.parametrize("config, batch_size", [(NeighborLocDataConfig, 16), (ResidueEnvDataConfig, 32),
                                                (LBADataConfig, 16)])
def test_the_task_data_configs_declare_the_loader_fields_once(config, batch_size):
    """The seed and the loader settings are TaskDataConfig's fields and check: a task declares one
    again only for another default, and the checks of its example config still run."""
    from atompaint.tasks.common import TaskDataConfig

    shared = {f.name: f.default for f in dataclasses.fields(TaskDataConfig)}
    assert list(shared) == ["seed", "batch_size", "num_workers"]
    redeclared = set(vars(config)["__annotations__"]) & set(shared)
    assert all(config.__dataclass_fields__[name].default != shared[name] for name in redeclared)
    assert (config().seed, config().batch_size, config().num_workers) == (0, batch_size, 0)
    for bad in ({"batch_size": 0}, {"num_workers": -1}):
        with pytest.raises(ValueError, match="batch_size must be >= 1 and num_workers >= 0"):
            config(**bad)
    if config is not LBADataConfig:
        with pytest.raises(ValueError, match="cache_structures must be >= 1"):
            config(cache_structures=0)


def test_config_round_trips_through_plain_data():
    config = config_from_dict({**tiny_config(), "data": {"image": {"length_voxels": L, "channels": [["C"], ["*"]],
                                                                   "radius_A": {"C": 0.7, "*": 0.5}},
                                                         "weighted": True, "origins": {"min_atoms": 3}}})
    assert config.data.weighted and config.data.origins.min_atoms == 3
    assert config_from_dict(config.to_dict()) == config
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config


def _leaves(mapping: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and key != "options":
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_experiment_configs_load_into_the_domain_dataclasses(path):
    """Every YAML of experiments/ loads, each of its keys reaching a field of a domain dataclass
    (the library's own config classes, not a copy of them) with the value the file gives."""
    raw = yaml.safe_load(path.read_text())
    config = load_config(path)
    folder_task = {"compressed_encoders": "neighbor-loc"}  # a study of encoders for a task
    assert config.task == raw["task"] == folder_task.get(path.parent.name, path.parent.name.replace("_", "-"))
    written = _leaves(to_dict(config))
    for key, value in _leaves(raw).items():
        assert written[key] == value, key
    assert config.encoder.input_size == config.data.image.length_voxels
    assert config.encoder.in_channels == config.data.input_channels
    assert type(config.encoder) is EncoderConfig and type(config.head) is HeadConfig
    assert type(config.data.image) is ImageParams
    assert type(config.optim) is OptimConfig and type(config.trainer) is TrainerConfig
    if config.task == "neighbor-loc":
        assert isinstance(config.data, NeighborLocConfig) and isinstance(config.data, NeighborLocDataConfig)
    elif config.task == "lba":
        assert type(config.data) is LBADataConfig and type(config.finetune) is FinetuneConfig
    else:
        assert type(config.data) is ResidueEnvDataConfig
    names = {f.name for f in dataclasses.fields(config)}
    assert set(raw) <= names


def test_seed004_config_is_the_chosen_model():
    config = load_config(EXPERIMENTS / "seed004_gamma_log16.yaml")
    enc = config.encoder
    chosen = (enc.architecture, enc.block, enc.schedule, enc.max_channels, enc.bottleneck)
    assert chosen == ("resnet", "gamma", "log", 16, None)


def test_train_cli_rejects_a_task_that_is_not_the_configs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    with pytest.warns(DeprecationWarning, match="positional TASK is deprecated"):
        assert main(["train", "lba", "--config", str(path)]) == 2
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert os.listdir(tmp_path) == ["c.yaml"]


def test_train_cli_flags_reach_the_config_and_old_spellings_warn(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_train(config, *, out_dir, resume=False, resume_from=None, overwrite=False, override=False):
        calls.append((config, out_dir))
        resumes.append((resume, resume_from, overwrite, override))
        return RunResult(run_dir=Path(out_dir) / config.name, seconds=0.0, metrics={})

    resumes: list[tuple] = []

    monkeypatch.setattr(atompaint.training.run, "train", fake_train)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(max_epochs=7)))
    base = ["train", "--config", str(path)]  # the task is the config's

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert main([*base, "--out-dir", str(tmp_path / "new"), "--epochs", "2", "--no-progress",
                     "--set", "data.weighted=true", "--set", "optim.lr=0.05", "--devices", "1",
                     "--set", "data.padding_A=4", "--set", "data.origins.min_atoms=30",
                     "--head-layer", "afdf", "--head-depth", "3"]) == 0
    config, out_dir = calls[-1]
    assert out_dir == tmp_path / "new"
    assert config.trainer.max_epochs == 2 and config.trainer.progress_bar is False and config.trainer.devices == 1
    assert config.data.weighted is True and config.optim.lr == 0.05 and config.optim.optimizer == "adamw"
    assert config.data.padding_A == 4.0 and config.data.origins.min_atoms == 30.0
    assert (config.head.layer.name, config.head.layer.depth) == ("afdf", 3)

    with pytest.warns(FutureWarning) as record:
        assert main([*base, "--output-dir", str(tmp_path / "old"), "--max-epochs", "3"]) == 0
    messages = " ".join(str(w.message) for w in record)
    assert "--output-dir is deprecated" in messages and "--max-epochs is deprecated" in messages
    config, out_dir = calls[-1]
    assert out_dir == tmp_path / "old" and config.trainer.max_epochs == 3
    err = capsys.readouterr().err
    assert "use --out-dir" in err and "use --epochs" in err

    assert main([*base]) == 0
    config, out_dir = calls[-1]
    assert out_dir == Path("runs") and config.trainer.max_epochs == 7 and config.trainer.progress_bar is False
    assert resumes[-1] == (False, None, False, False)

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert main([*base, "--resume", "--override"]) == 0
        assert resumes[-1] == (True, None, False, True)
        assert main([*base, "--resume-from", "a.ckpt", "--overwrite"]) == 0
        assert resumes[-1] == (False, Path("a.ckpt"), True, False)
    with pytest.warns(FutureWarning, match="--resume last is deprecated.*use --resume"):
        assert main([*base, "--resume", "last"]) == 0
    assert resumes[-1] == (True, None, False, False)
    with pytest.warns(FutureWarning, match="--resume CKPT is deprecated.*use --resume-from CKPT"):
        assert main([*base, "--resume", "x/last.ckpt"]) == 0
    assert resumes[-1] == (False, Path("x/last.ckpt"), False, False)
    assert main([*base, "--set", "data.no_such_key=1"]) == 2
    assert main([*base, "--head-layer", "dense", "--head-depth", "12"]) == 2
    assert "cannot be stacked" in capsys.readouterr().err


def test_library_floor_and_config_loading_do_not_import_lightning():
    code = (
        "import sys, atompaint.structures, atompaint.voxelize, atompaint.origins, atompaint.encoders, atompaint.heads\n"
        "import atompaint.tasks.neighbor_loc.dataset, atompaint.tasks.lba.dataset\n"
        f"from atompaint.training import load_config; load_config({str(EXPERIMENTS / 'sanity_acdc.yaml')!r})\n"
        "assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules), 'Lightning'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
