"""Checkpoint files of a training run: what each records (epoch, step, the run's configuration),
read without loading the weights; the newest one chosen by that record, never by file name or
modification time (a copied run folder has fresh times, Lightning's ``last-v1.ckpt`` a misleading
name); unreadable files reported in one line that names them and the newest readable alternative;
writes that are atomic (a killed process leaves the previous file, never a truncated one).

Pure torch: the Lightning parts of a run live in :mod:`structlayers.lightning.callbacks`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Extension of checkpoint files.
SUFFIX = ".ckpt"
#: Name of the checkpoint written at the end of every epoch and when a run stops.
LAST = "last" + SUFFIX
#: Checkpoint entry holding the configuration of the run that wrote it.
RUN_KEY = "structlayers_run"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message is one line naming the file."""


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a checkpoint is and how far its run had got when it was written."""

    path: Path
    epoch: int
    global_step: int
    #: The configuration of the run that wrote it (``None`` for checkpoints written without one).
    config: dict[str, Any] | None = None

    def describe(self) -> str:
        return f"{self.path} (epoch {self.epoch}, step {self.global_step})"

    @property
    def progress(self) -> tuple[int, int, bool]:
        """Sort key: optimiser steps, then epochs; at equal progress ``last.ckpt`` (written after
        the best-model checkpoint of the same validation, so it holds the newer callback states)."""
        return self.global_step, self.epoch, self.path.name == LAST


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    reason = text[0] if text else type(err).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _damage(path: Path, err: BaseException) -> str:
    """What a file that ``torch.load`` could not read is, from its first bytes and the error."""
    with path.open("rb") as f:
        head = f.read(8)
    if not head.startswith(b"PK\x03\x04") and head[:1] != b"\x80":
        return f"is not a torch file (it begins {head!r})"
    if "weights only load failed" in str(err).lower():
        return "holds Python objects besides tensors and plain data (a pickled module? save its state_dict)"
    if head.startswith(b"PK\x03\x04"):
        return f"is a truncated or damaged torch file ({_reason(err)})"
    return f"is a damaged torch file in the legacy format ({_reason(err)})"


def read_torch_file(path: str | os.PathLike[str], what: str = "checkpoint", *, mmap: bool = False) -> Any:
    """The contents of the torch file ``path`` (a checkpoint, a ``state_dict``), on CPU, loaded
    with ``weights_only=True`` (tensors and plain data only); with ``mmap`` the tensors are mapped
    from the file, not read.

    Raises :class:`CheckpointError`, one line starting with ``what`` and the path, for a file
    that is missing, a folder, empty, truncated or damaged, or not a torch file at all.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} is " + ("a folder, not a file" if path.is_dir() else "not a file"))
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): it was never completely written")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if not (mmap and "mmap" in str(err)):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        raise CheckpointError(f"{what} {path} {_damage(path, err)}") from None


def stored_config(obj: Any) -> Mapping[str, Any] | None:
    """The run configuration a training checkpoint records (``structlayers.lightning``' record, else
    the LightningModule's ``hyper_parameters["config"]``), or ``None``."""
    if not isinstance(obj, Mapping):
        return None
    for record in (obj.get(RUN_KEY), obj.get("hyper_parameters")):
        if isinstance(record, Mapping) and isinstance(record.get("config"), Mapping):
            return record["config"]
    return None


def _summary(config: Mapping[str, Any]) -> str:
    """The settings that tell runs apart: task, name, and the model / encoder / head choices."""
    parts = [f"{key} {config[key]}" for key in ("task", "name") if isinstance(config.get(key), str)]
    for section in ("model", "encoder", "head"):
        value = config.get(section)
        if isinstance(value, Mapping):
            chosen = [f"{k}={value[k]}" for k in ("name", "architecture", "layer", "depth", "replace")
                      if value.get(k) is not None]
            if chosen:
                parts.append(f"{section} {','.join(chosen)}")
    return "; ".join(parts)


def describe_contents(obj: Any) -> str:
    """What a loaded torch file holds, in a few words: a training checkpoint (with the module
    class and configuration it records), a ``state_dict``, a bare tensor, or something else."""
    if isinstance(obj, torch.Tensor):
        return f"a bare tensor of shape {tuple(obj.shape)}"
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}"
    if "state_dict" in obj:
        run = obj.get(RUN_KEY)
        module = run.get("module") if isinstance(run, Mapping) else None
        config = stored_config(obj)
        details = [f"of {module}"] if module else []
        if config:
            details.append(f"({_summary(config) or 'a run configuration'})")
        return " ".join(["a training checkpoint", *details])
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"a state_dict of {len(obj)} tensor(s) ({_names(list(map(str, obj)))})"
    return f"a dict with entries {_names(list(map(str, obj)))}" if obj else "an empty dict"


def read_state_dict(path: str | os.PathLike[str], what: str = "weights", *, strip_prefix: str = ""
                    ) -> tuple[dict[str, Any], str]:
    """``(state_dict, description)`` of ``path``: a plain ``state_dict``, or the ``state_dict`` of
    a training checkpoint (its keys' common ``strip_prefix``, such as a LightningModule's
    ``model.``, removed).  ``description`` (:func:`describe_contents`) belongs in any error about
    the weights not fitting.  Anything else is a :class:`CheckpointError` saying what it holds."""
    obj = read_torch_file(path, what)
    description = describe_contents(obj)
    state = obj.get("state_dict") if isinstance(obj, Mapping) else None
    if state is None and isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{what} {path} holds {description}, not a state_dict or a training checkpoint")
    if strip_prefix and state and all(str(k).startswith(strip_prefix) for k in state):
        state = {str(k)[len(strip_prefix):]: v for k, v in state.items()}
    return dict(state), description


def load_checkpoint(path: str | os.PathLike[str], *, mmap: bool = True, what: str = "checkpoint") -> dict[str, Any]:
    """The contents of a Lightning checkpoint, on CPU; with ``mmap`` the tensors are mapped from
    the file, not read, so looking at the recorded epoch and step of a large checkpoint is cheap.

    Raises :class:`CheckpointError` for a missing, empty, truncated or foreign file (one line
    naming it; see :func:`read_torch_file`).
    """
    obj = read_torch_file(path, what, mmap=mmap)
    if not isinstance(obj, dict) or not {"epoch", "global_step", "state_dict"} <= set(obj):
        raise CheckpointError(f"{what} {path} is not a training checkpoint: it holds {describe_contents(obj)}, "
                              "with no epoch, global_step and state_dict")
    return obj


def checkpoint_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """The recorded progress (and run configuration) of checkpoint ``path``; see :func:`load_checkpoint`."""
    obj = load_checkpoint(path)
    run = obj.get(RUN_KEY)
    config = run.get("config") if isinstance(run, Mapping) else None
    return CheckpointInfo(Path(path), int(obj["epoch"]), int(obj["global_step"]), config)


def scan_checkpoints(folder: str | os.PathLike[str]) -> tuple[list[CheckpointInfo], list[CheckpointError]]:
    """``(readable, unreadable)`` checkpoints directly in ``folder`` (hidden partial writes skipped)."""
    good: list[CheckpointInfo] = []
    bad: list[CheckpointError] = []
    folder = Path(folder)
    if not folder.is_dir():
        return good, bad
    for path in sorted(folder.glob("*" + SUFFIX)):
        if path.name.startswith("."):
            continue
        try:
            good.append(checkpoint_info(path))
        except CheckpointError as err:
            bad.append(err)
    return good, bad


def newest(checkpoints: list[CheckpointInfo]) -> CheckpointInfo:
    return max(checkpoints, key=lambda c: c.progress)


def _alternative(good: list[CheckpointInfo], folder: Path, use: str) -> str:
    if not good:
        return f"no readable checkpoint remains in {folder}"
    best = newest(good)
    return f"the newest readable checkpoint is {best.describe()}; {use.format(path=best.path)}"


def offer(folder: str | os.PathLike[str], use: str = "resume from it explicitly") -> str:
    """The sentence that follows an unreadable-checkpoint message: the newest readable checkpoint
    in ``folder`` and how to ``use`` it (``{path}`` is replaced by its path)."""
    return _alternative(scan_checkpoints(folder)[0], Path(folder), use)


def newest_checkpoint(folder: str | os.PathLike[str], use: str = "resume from it explicitly") -> CheckpointInfo:
    """The checkpoint in ``folder`` that got furthest (optimiser steps, then epochs, as recorded
    inside each file), whatever the files are called.

    Any unreadable checkpoint makes this an error rather than a silent fallback (it might be the
    newest): the message names it and offers the newest readable one, with ``use`` telling how to
    pick it (``{path}`` is replaced by its path).  No checkpoint at all is ``FileNotFoundError``.
    """
    good, bad = scan_checkpoints(folder)
    if bad:
        more = f" (and {len(bad) - 1} more unreadable)" if len(bad) > 1 else ""
        raise CheckpointError(f"{bad[0]}{more}; {_alternative(good, Path(folder), use)}")
    if not good:
        raise FileNotFoundError(f"no checkpoint in {folder} to continue from")
    return newest(good)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` through a hidden temporary file in the same folder, flushed to
    disk and renamed over ``path``: readers see the previous file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with tmp.open("wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def _names(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _plain(value: Any) -> Any:
    """A recorded ``_extra_state`` as plain data, so records compare whatever their type."""
    return value.tolist() if isinstance(value, torch.Tensor) else value


def check_state_dict(module: nn.Module, state_dict: Mapping[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` (one line) unless ``state_dict`` loads into ``module``
    exactly: the same keys, tensor shapes and recorded layer structure (``_extra_state``)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_names(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_names(unexpected)})")
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state_dict and isinstance(v, torch.Tensor) and isinstance(state_dict[k], torch.Tensor)
              and state_dict[k].shape != v.shape]
    if shapes:
        problems.append(f"{len(shapes)} of another shape ({_names(shapes)})")
    structure = [f"{k} {_plain(state_dict[k])} vs {_plain(v)}" for k, v in expected.items()
                 if k.endswith("_extra_state") and k in state_dict and _plain(state_dict[k]) != _plain(v)]
    if structure:
        problems.append(f"{len(structure)} layer(s) of another structure ({_names(structure)})")
    if problems:
        raise CheckpointError(f"{source} does not fit this model: " + "; ".join(problems))
