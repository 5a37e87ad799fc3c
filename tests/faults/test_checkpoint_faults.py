"""Fault probes of every command that starts from a checkpoint or weights file (``structlayers
replace --weights``, ``atompaint evaluate``, LBA fine-tuning): a file that is missing, a folder,
empty, truncated, not a torch file, a bare tensor, or the checkpoint of another model or task is
one error line naming the file and what it holds, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from structlayers.lab.models import build_model
from structlayers.lightning.checkpoints import RUN_KEY, CheckpointError
from tests.faults.probes import CLI, error_line

REPLACE = ("replace", "mnist-mlp", "--replace", "lowrank", "-o", "rank=8", "--init", "project")


def training_checkpoint(path: Path, state_dict: dict, config: dict, module: str) -> Path:
    """A checkpoint as ``structlayers.lightning`` writes it (progress, weights, the run's record)."""
    torch.save({"epoch": 0, "global_step": 1, "state_dict": state_dict, "hyper_parameters": {"config": config},
                RUN_KEY: {"config": config, "module": module}}, path)
    return path


def neighbor_loc_checkpoint(path: Path) -> Path:
    config = {"task": "neighbor-loc", "name": "probe", "encoder": {"architecture": "shallow"}}
    return training_checkpoint(path, {"model.encoder.0.weights": torch.zeros(3)}, config, "NeighborLocTask")


def mnist_stack_checkpoint(path: Path) -> Path:
    model = build_model("mnist-stack", depth=2)
    config = {"task": "mnist", "model": {"name": "mnist-stack", "layer": "acdc", "depth": 2}}
    return training_checkpoint(path, {f"model.{k}": v for k, v in model.state_dict().items()}, config,
                               "ClassifierModule")


def truncated(path: Path) -> Path:
    torch.save(build_model("mnist-mlp").state_dict(), path)
    path.write_bytes(path.read_bytes()[:2000])
    return path


BAD_FILES = {
    "missing": (lambda p: p, "does not exist"),
    "a folder": (lambda p: (p.mkdir(), p)[1], "is a folder, not a file"),
    "empty": (lambda p: (p.write_bytes(b""), p)[1], "is empty (0 bytes)"),
    "garbage": (lambda p: (p.write_bytes(b"not a checkpoint at all"), p)[1], "is not a torch file"),
    "truncated": (truncated, "is a truncated or damaged torch file"),
    "a bare tensor": (lambda p: (torch.save(torch.zeros(3, 4), p), p)[1], "a bare tensor of shape (3, 4)"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_replace_weights_that_are_not_weights(cli: CLI, tmp_path: Path, kind: str) -> None:
    make, message = BAD_FILES[kind]
    path = make(tmp_path / "weights.pt")
    code, out, err = cli(*REPLACE, "--weights", path)
    line = error_line(err)
    assert code == 2 and f"--weights {path} " in line and message in line, line
    assert out == ""


@pytest.mark.parametrize(("make", "what"), [
    (mnist_stack_checkpoint, "a training checkpoint of ClassifierModule (task mnist; model name=mnist-stack"),
    (neighbor_loc_checkpoint, "a training checkpoint of NeighborLocTask (task neighbor-loc; name probe"),
])
def test_replace_weights_of_another_model(cli: CLI, tmp_path: Path, make, what: str) -> None:
    path = make(tmp_path / "other.ckpt")
    code, _, err = cli(*REPLACE, "--weights", path)
    line = error_line(err)
    assert code == 2 and f"--weights {path} ({what}" in line and "does not fit this model" in line, line


def test_replace_from_trained_weights_and_without_them(cli: CLI, tmp_path: Path) -> None:
    torch.save(build_model("mnist-mlp").state_dict(), tmp_path / "mlp.pt")
    code, _, err = cli(*REPLACE, "--weights", tmp_path / "mlp.pt")
    assert code == 0 and "warning" not in err, err
    code, _, err = cli(*REPLACE)
    assert code == 0 and "--init project without --weights projects the replacements from mnist-mlp's random " \
                         "initialisation: there are no trained weights" in err


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_evaluate_a_checkpoint_that_is_not_one(atompaint: CLI, tmp_path: Path, kind: str) -> None:
    make, message = BAD_FILES[kind]
    path = make(tmp_path / "run.ckpt")
    code, out, err = atompaint("evaluate", path)
    line = error_line(err)
    assert code == 2 and f"checkpoint {path} " in line and message in line, line
    assert out == ""


def test_evaluate_a_checkpoint_of_another_task(atompaint: CLI, tmp_path: Path) -> None:
    path = mnist_stack_checkpoint(tmp_path / "mnist.ckpt")
    code, _, err = atompaint("evaluate", path)
    assert code == 2 and error_line(err).endswith(
        f"checkpoint {path} is a training checkpoint of ClassifierModule (task mnist; model name=mnist-stack,"
        "layer=acdc,depth=2), not a checkpoint of `atompaint train neighbor-loc`")


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "a bare tensor"])
def test_lba_pretrained_checkpoint_that_is_not_one(tmp_path: Path, kind: str) -> None:
    from atompaint.tasks.lba.module import load_pretrained_encoder

    make, message = BAD_FILES[kind]
    path = make(tmp_path / "pre.ckpt")
    with pytest.raises(CheckpointError, match=f"pretrained checkpoint {path} .*{re.escape(message)}"):
        load_pretrained_encoder(torch.nn.Linear(2, 2), str(path))
    with pytest.raises(ValueError, match=r"\(a training checkpoint of ClassifierModule .*holds no encoder weights"):
        load_pretrained_encoder(torch.nn.Linear(2, 2), str(mnist_stack_checkpoint(tmp_path / "m.ckpt")))
