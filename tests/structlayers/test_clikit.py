"""Shared CLI building blocks: defaults read from the config dataclasses, typed options, the one set of
flag words and the deprecated spellings that still work."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from structlayers import configs
from structlayers.cli import main
from structlayers.clikit import add_config_arguments, add_json, config_from_args, overrides_from_args
from structlayers.lab.data.datamodule import DataConfig
from structlayers.lightning import OptimConfig, TrainerConfig


@pytest.mark.parametrize("cls", [OptimConfig, TrainerConfig, DataConfig])
def test_generated_flags_default_to_the_dataclass(cls: type) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, cls, dest_prefix="x.")
    assert config_from_args(cls, parser.parse_args([]), "x.") == cls()


def test_generated_flags_are_typed() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainerConfig, flags={"max_epochs": "--epochs", "progress_bar": "--progress"})
    args = parser.parse_args(["--epochs", "3", "--devices", "0,1", "--limit-train-batches", "0.25", "--no-progress"])
    config = config_from_args(TrainerConfig, args)
    got = (config.max_epochs, config.devices, config.limit_train_batches, config.progress_bar)
    assert got == (3, [0, 1], 0.25, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--epochs", "three"])
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, OptimConfig)
    with pytest.raises(SystemExit):
        parser.parse_args(["--optimizer", "lamb"])


@dataclass
class _Inner:
    size: int = 3
    mode: Literal["a", "b"] = "a"


@dataclass
class _Outer:
    name: str
    inner: _Inner = field(default_factory=_Inner)
    weights: tuple[float, ...] = (1.0,)
    path: Path | None = None


def test_from_dict_checks_types_and_keys() -> None:
    built = configs.from_dict(_Outer, {"name": "x", "inner": {"size": "4", "mode": "b"}, "weights": [1, 2]})
    assert built == _Outer("x", _Inner(4, "b"), (1.0, 2.0))
    plain = {"name": "x", "inner": {"size": 4, "mode": "b"}, "weights": [1.0, 2.0], "path": None}
    assert configs.to_dict(built) == plain
    for bad, match in [({"name": "x", "inner": {"sise": 4}}, "unknown key"), ({"name": "x", "inner": {"mode": "c"}},
                       "one of"), ({"inner": {}}, "missing required"), ({"name": "x", "weights": ["nan"]}, "finite")]:
        with pytest.raises(configs.ConfigError, match=match):
            configs.from_dict(_Outer, bad)
    assert configs.replace_fields(built, {"inner.size": "7"}).inner.size == 7


def test_json_flag_writes_a_file_or_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "count.json"
    assert main(["count", "mnist-mlp", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == "mnist-mlp"
    capsys.readouterr()
    assert main(["count", "mnist-mlp", "--json", "-"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):])["model"] == "mnist-mlp"


def test_deprecated_out_spelling_still_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "approx.json"
    with pytest.warns(FutureWarning, match="--out is deprecated"):
        code = main(["approx", "--layer", "lowrank", "--n", "6", "--seeds", "1", "--steps", "5", "--no-progress",
                     "--out", str(out)])
    assert code == 0 and json.loads(out.read_text())["config"]["layer"] == "lowrank"
    assert "deprecated; use --json" in capsys.readouterr().err


def test_json_flag_without_deprecated_alias() -> None:
    parser = argparse.ArgumentParser()
    add_json(parser)
    assert parser.parse_args(["--json", "r.json"]).json == Path("r.json")
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "r.json"])


@dataclass
class _Run:
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(optimizer="adamw", schedule="plateau"))
    inner: _Inner = field(default_factory=_Inner)


def test_a_section_given_in_part_keeps_the_declared_defaults() -> None:
    run = configs.from_dict(_Run, {"optim": {"lr": "0.01"}, "inner": None})
    assert (run.optim.optimizer, run.optim.schedule, run.optim.lr) == ("adamw", "plateau", 0.01)
    assert run.inner == _Inner()
    changed = configs.replace_fields(run, {"optim": {"momentum": 0.5}, "inner.mode": "b"})
    assert (changed.optim.optimizer, changed.optim.momentum, changed.inner.mode) == ("adamw", 0.5, "b")


def test_override_flags_keep_what_was_left_out() -> None:
    """``overrides=True``: a flag left out is not applied (a YAML value stays), one given is collected."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainerConfig, only=("max_epochs", "progress_bar"), dest_prefix="t.", overrides=True)
    assert overrides_from_args(TrainerConfig, parser.parse_args([]), "t.") == {}
    args = parser.parse_args(["--max-epochs", "7", "--no-progress-bar"])
    assert overrides_from_args(TrainerConfig, args, "t.", "trainer.") == {"trainer.max_epochs": 7,
                                                                         "trainer.progress_bar": False}
    assert "(default: 10)" in parser.format_help()
