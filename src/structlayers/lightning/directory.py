"""The folder of a training run and the rules for starting, overwriting and resuming it.

Layout (the trainer adds its own outputs: logs, metrics, curves)::

    config.json            the configuration in effect (of the latest session)
    config.original.json   the configuration the run started with, kept once a resumed session changed it
    history.jsonl          one line per session: when, how (new / overwrite / resume), from which
                           checkpoint (path, epoch, step) and every configuration change
    checkpoints/           last.ckpt (every epoch and when a run stops) and the trainer's others

Preparing a session is two steps so that several processes of one run (DDP) can share it:
:meth:`RunDirectory.plan` only reads (every process checks the folder and the checkpoint, and
refuses a conflicting configuration with the list of differences), and :meth:`RunDirectory.record`
writes, once, from the first process, after every process has checked.  The one exception is
:meth:`RunDirectory.clear`: a session that overwrites a run removes the old one (first process)
before its trainer is built, because loggers number their log folders by the ones they find.

A resumed session compares its configuration with the one recorded in the checkpoint it continues
(``config.json`` for checkpoints without one).  Keys matching :attr:`ResumePolicy.changeable`
(a learning rate, the number of epochs, the devices) may differ: the new values apply and the
change is recorded.  Keys matching :attr:`ResumePolicy.ignored` are not part of the run (where its
outputs go, whether a progress bar shows).  A configuration recorded in an older vocabulary is first
read in the current one (:attr:`ResumePolicy.upgrade`).  Any other difference is refused unless the session
asks to ``override``; then it is applied and recorded too, and the original configuration kept.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from structlayers.lightning.checkpoints import CheckpointInfo, checkpoint_info, newest_checkpoint

CONFIG = "config.json"
ORIGINAL = "config.original.json"
HISTORY = "history.jsonl"
CHECKPOINTS = "checkpoints"

Mode = Literal["new", "overwrite", "resume"]


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class ConfigChange:
    """One configuration key (dotted) whose value differs between the run and a new session."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {self.old!r} -> {self.new!r}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "old": None if self.old is ABSENT else self.old,
                "new": None if self.new is ABSENT else self.new}


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level with dotted keys (``{"optim": {"lr": 1}} -> {"optim.lr": 1}``)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def diff_configs(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Sequence[str] = ()) -> list[ConfigChange]:
    """The dotted keys whose values differ between two configurations (``ignore``: glob patterns
    of keys to leave out); a key present in one only shows :data:`ABSENT` on the other side."""
    a, b = flatten(old), flatten(new)
    return [ConfigChange(k, a.get(k, ABSENT), b.get(k, ABSENT)) for k in sorted(set(a) | set(b))
            if not _matches(k, ignore) and a.get(k, ABSENT) != b.get(k, ABSENT)]


@dataclass(frozen=True)
class ResumePolicy:
    """What a resumed session may change (glob patterns over dotted configuration keys)."""

    #: Keys whose new values apply on resume and are recorded (learning rate, epochs, devices, ...).
    changeable: tuple[str, ...] = ()
    #: Keys that are not part of the run: neither compared nor recorded.
    ignored: tuple[str, ...] = ()
    #: The recorded configuration in the current vocabulary (older words mapped to their
    #: replacements, with a deprecation warning), before it is compared.
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def split(self, changes: Sequence[ConfigChange]) -> tuple[list[ConfigChange], list[ConfigChange]]:
        """``(changeable, conflicting)`` among ``changes`` (ignored keys already left out)."""
        ok = [c for c in changes if _matches(c.key, self.changeable)]
        return ok, [c for c in changes if not _matches(c.key, self.changeable)]


class RunConflictError(ValueError):
    """A resumed session whose configuration differs from the run's where that is not allowed."""


@dataclass(frozen=True)
class RunPlan:
    """What a session will do to its run folder; made by :meth:`RunDirectory.plan` (which only
    reads) and carried out by :meth:`RunDirectory.record`."""

    path: Path
    mode: Mode
    #: The session's full configuration (plain data).
    config: dict[str, Any]
    checkpoint: CheckpointInfo | None = None
    #: Differences from the run's recorded configuration that the session applies.
    changes: tuple[ConfigChange, ...] = ()
    #: Those of ``changes`` that needed ``override``.
    overridden: tuple[ConfigChange, ...] = ()
    #: The configuration recorded with the run (for resumed sessions), if any.
    recorded: dict[str, Any] | None = field(default=None, compare=False)

    def describe(self) -> str:
        """A short account for the console."""
        if self.mode != "resume":
            return f"{'overwriting' if self.mode == 'overwrite' else 'starting'} the run in {self.path}"
        assert self.checkpoint is not None
        lines = [f"resuming from {self.checkpoint.describe()}"]
        lines += [f"  {c}{' (override)' if c in self.overridden else ''}" for c in self.changes]
        return "\n".join(lines)


def _process_rank() -> int:
    """This process's rank in a multi-process run, as launchers set it in the environment (0 alone)."""
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _writable_dir(path: Path) -> None:
    """Fail unless ``path`` is, or can be made, a folder that can be written: missing folders are
    created and a file written there, then both removed again (so the check is real, whatever the
    permissions say, without leaving anything behind).  Only the first process of a run probes."""
    if _process_rank() != 0:
        return
    created: list[Path] = []
    probe = path
    while not probe.exists() and probe.parent != probe:
        created.append(probe)
        probe = probe.parent
    try:
        for folder in reversed(created):
            folder.mkdir()
        marker = path / f".write-test-{os.getpid()}"
        marker.touch()
        marker.unlink()
    except OSError as err:
        raise PermissionError(f"cannot write the run folder {path}: {err.strerror or err}") from None
    finally:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                pass


class RunDirectory:
    """A run's folder (see the module docs); ``outputs`` names the trainer's own files and folders
    there (logs, metrics), removed together with the run's when a session overwrites it."""

    def __init__(self, path: str | os.PathLike[str], outputs: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.outputs = tuple(outputs)
        self._cleared = False

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def read_config(self) -> dict[str, Any] | None:
        """The configuration in effect (``config.json``), or ``None`` without one."""
        path = self.path / CONFIG
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None

    def history(self) -> list[dict[str, Any]]:
        """The sessions recorded so far, oldest first."""
        path = self.path / HISTORY
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def holds_run(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    def plan(
        self,
        config: Mapping[str, Any],
        *,
        resume: bool = False,
        resume_from: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        override: bool = False,
        policy: ResumePolicy = ResumePolicy(),
        use_checkpoint: str = "resume from it explicitly",
    ) -> RunPlan:
        """Check the folder for a session with ``config`` (reads only; see the module docs).

        ``resume`` continues from the newest checkpoint (by recorded progress), ``resume_from``
        from that file.  Raises ``ValueError`` subclasses with one-line messages: a folder that
        holds a run (without ``resume`` or ``overwrite``), an unreadable checkpoint (naming the
        newest readable one, with ``use_checkpoint`` telling how to pick it), or a configuration
        that differs where ``policy`` allows no change (listing each difference).
        """
        config = json.loads(json.dumps(dict(config), default=str))
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"run folder {self.path} is a file")
        if not (resume or resume_from):
            if self.holds_run() and not overwrite:
                raise FileExistsError(f"{self.path} already holds a run; pass --resume to continue it, "
                                      "or --overwrite / another --out-dir")
            _writable_dir(self.path)
            return RunPlan(self.path, "overwrite" if self.holds_run() else "new", config)
        if overwrite:
            raise ValueError("resuming and overwriting a run exclude each other")
        _writable_dir(self.path)
        if resume_from is not None:
            checkpoint = checkpoint_info(resume_from)
        else:
            if not self.holds_run():
                raise FileNotFoundError(f"{self.path} holds no run to resume (no checkpoint to continue from)")
            checkpoint = newest_checkpoint(self.checkpoints, use_checkpoint)
        recorded = checkpoint.config if checkpoint.config is not None else self.read_config()
        if recorded is None:
            return RunPlan(self.path, "resume", config, checkpoint)
        if policy.upgrade is not None:
            recorded = policy.upgrade(recorded)
        changes = diff_configs(recorded, config, policy.ignored)
        allowed, conflicting = policy.split(changes)
        if conflicting and not override:
            listed = "; ".join(map(str, conflicting))
            raise RunConflictError(
                f"{checkpoint.path} was written by a run with another configuration: {listed}. "
                "These cannot change when a run resumes; pass --override to apply them anyway (recorded, "
                "and the original configuration kept), or start a new run with another --out-dir"
            )
        return RunPlan(self.path, "resume", config, checkpoint, tuple(changes), tuple(conflicting), recorded)

    def _clear(self) -> None:
        for name in (CONFIG, ORIGINAL, HISTORY, CHECKPOINTS, *self.outputs):
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

    def clear(self, plan: RunPlan) -> None:
        """Remove the run that an ``overwrite`` plan replaces: its records, checkpoints and
        :attr:`outputs` (from the first process only; nothing for other plans).  Call it before
        building the trainer, whose loggers pick the next free ``version_N`` of what is there."""
        if plan.mode == "overwrite" and _process_rank() == 0 and not self._cleared:
            if self.path.is_dir():
                self._clear()
            self._cleared = True

    def _write_config(self, name: str, config: Mapping[str, Any]) -> None:
        target = self.path / name
        tmp = target.with_name(f".{name}.partial")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        os.replace(tmp, target)

    def record(self, plan: RunPlan, argv: Sequence[str] | None = None) -> dict[str, Any]:
        """Carry out ``plan`` (from one process only): clear an overwritten run (unless
        :meth:`clear` did), write ``config.json`` (keeping the original as ``config.original.json``
        the first time a resumed session changes it) and append the session to ``history.jsonl``;
        returns that entry."""
        self.path.mkdir(parents=True, exist_ok=True)
        if plan.mode == "overwrite" and not self._cleared:
            self._clear()
            self._cleared = True
        current = self.read_config()
        if plan.mode == "resume" and plan.changes and current is not None and not (self.path / ORIGINAL).exists():
            self._write_config(ORIGINAL, current)
        if plan.mode != "resume" or plan.changes or current is None:
            self._write_config(CONFIG, plan.config)
        entry: dict[str, Any] = {
            "session": len(self.history()) + 1,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "mode": plan.mode,
            "argv": list(sys.argv if argv is None else argv),
            "resumed_from": None if plan.checkpoint is None else {
                "path": str(plan.checkpoint.path), "epoch": plan.checkpoint.epoch,
                "global_step": plan.checkpoint.global_step,
            },
            "changes": [{**c.to_dict(), "override": c in plan.overridden} for c in plan.changes],
        }
        with (self.path / HISTORY).open("a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry
