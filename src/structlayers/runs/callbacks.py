"""The Lightning side of a training run kept in a :class:`~structlayers.runs.directory.RunDirectory`:

- :class:`RunCheckpoints`, a callback that writes ``checkpoints/last.ckpt`` at the end of every
  epoch (Lightning's ``ModelCheckpoint(save_last=True)`` writes it only alongside a top-k save,
  so a run whose monitored metric stops improving leaves a stale ``last.ckpt``), when training
  ends for any reason, and when it is interrupted: the first Ctrl-C (SIGINT) stops after the
  current batch and saves, a second one aborts at once; SIGTERM (Lightning raises it between
  batches) saves too.  Every process of a multi-process run reaches the same decision (the stop
  request is reduced over ranks).  It writes the run's metadata from the first process only, after
  every process has checked the folder (a barrier), and stores the run's configuration in every
  checkpoint so that a resumed session is compared with what the weights were trained under;
- :class:`AtomicCheckpointIO`, Lightning's torch checkpoint I/O writing through a temporary file
  and a rename (:func:`~structlayers.runs.checkpoints.atomic_save`), so a killed process never
  leaves a truncated checkpoint;
- :func:`build_trainer`, ``lightning.Trainer`` with its configuration errors (an accelerator the
  machine lacks, a device count of 0) turned into one-line ``ValueError``\\ s;
- :func:`fit_run`, ``trainer.fit`` that returns, rather than raises, when :class:`RunCheckpoints`
  stopped the run on an interrupt, and says where it stopped and how to continue.

Lightning is imported when one of these is first used, never by importing this module (the
library stays light); the classes are module attributes created on first access, so they pickle
(``ddp_spawn``) like any other.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from structlayers.runs.checkpoints import LAST, RUN_KEY, atomic_save
from structlayers.runs.directory import RunDirectory, RunPlan

__all__ = ["AtomicCheckpointIO", "RunCheckpoints", "build_trainer", "fit_run"]  # noqa: F822 (created on first access)


def _run_checkpoints_class() -> type:
    from lightning.pytorch.callbacks import Checkpoint
    from lightning.pytorch.utilities.exceptions import SIGTERMException
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    class RunCheckpoints(Checkpoint):
        """See the module docs.  ``plan`` (``None`` for runs that keep no folder, such as smoke
        tests) is recorded by the first process at the start of training; ``graceful_interrupt``
        installs the Ctrl-C handler (main thread only)."""

        def __init__(self, directory: RunDirectory, plan: RunPlan | None = None, *,
                     graceful_interrupt: bool = True) -> None:
            super().__init__()
            self.directory, self.plan, self.graceful_interrupt = directory, plan, graceful_interrupt
            self.last_path: Path = directory.checkpoints / LAST
            #: Whether training stopped on a Ctrl-C or SIGTERM (``last.ckpt`` holds where it stopped).
            self.interrupted = False
            #: ``(epoch, global_step)`` where an interrupted run stopped, and the signal that stopped it.
            self.stopped_at: tuple[int, int] | None = None
            self.stop_signal: int | None = None
            self._saved_step = -1
            self._stop_requested = False
            self._previous_handler: Any = None

        def __getstate__(self) -> dict[str, Any]:
            return {**self.__dict__, "_previous_handler": None}

        # -- the run folder -------------------------------------------------------------
        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if stage == "fit":
                # Every process has planned (checked the folder) before it got here.
                trainer.strategy.barrier("structlayers-run-checked")

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if self.plan is not None and trainer.is_global_zero:
                self.directory.record(self.plan)
            trainer.strategy.barrier("structlayers-run-recorded")
            self._saved_step = trainer.global_step  # a resumed run does not re-save what it loaded
            # Installed after Lightning saved the signal handlers it restores when fit ends.
            if self.graceful_interrupt and threading.current_thread() is threading.main_thread():
                self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

        def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            if self.plan is not None:
                checkpoint[RUN_KEY] = {"config": self.plan.config, "module": type(pl_module).__qualname__}

        # -- last.ckpt: at the end of each epoch (after its validation, where Lightning's own
        # ModelCheckpoint saves too, so a resumed run continues exactly), and when training ends
        def _save(self, trainer: Any) -> None:
            if trainer.fast_dev_run or trainer.sanity_checking or self._saved_step == trainer.global_step:
                return
            trainer.save_checkpoint(self.last_path, weights_only=False)
            self._saved_step = trainer.global_step

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self._save(trainer)
            self._check_stop(trainer)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._save(trainer)

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            self._restore_handler()  # Lightning skips the teardown hooks after an exception
            if isinstance(exception, SIGTERMException):
                self.interrupted, self.stop_signal = True, int(signal.SIGTERM)
                self.stopped_at = (trainer.current_epoch, trainer.global_step)
                self._save(trainer)

        # -- interruption ---------------------------------------------------------------
        def _on_sigint(self, signum: int, frame: Any) -> None:
            if self._stop_requested:
                signal.signal(signal.SIGINT, self._previous_handler or signal.default_int_handler)
                raise KeyboardInterrupt
            self._stop_requested = True
            print(f"\ninterrupted: stopping after the current batch and saving {self.last_path} "
                  "(Ctrl-C again to stop at once without saving)", file=sys.stderr, flush=True)

        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            self._restore_handler()

        def _restore_handler(self) -> None:
            if self._previous_handler is not None:
                signal.signal(signal.SIGINT, self._previous_handler)
                self._previous_handler = None

        def _check_stop(self, trainer: Any) -> None:
            stop = self._stop_requested
            if trainer.world_size > 1:
                stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
            if stop and not self.interrupted:
                self._save(trainer)
                self.interrupted, self.stop_signal = True, int(signal.SIGINT)
                self.stopped_at = (trainer.current_epoch, trainer.global_step)
                trainer.should_stop = True
                rank_zero_info(f"stopped at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                               f"saved {self.last_path}")

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self._check_stop(trainer)

    RunCheckpoints.__module__, RunCheckpoints.__qualname__ = __name__, "RunCheckpoints"
    return RunCheckpoints


def _atomic_checkpoint_io_class() -> type:
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Lightning's torch checkpoint I/O, writing local files atomically (see the module docs)."""

        def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
            if storage_options is not None or "://" in str(path):
                return super().save_checkpoint(checkpoint, path, storage_options)
            atomic_save(checkpoint, path)
            return None

    AtomicCheckpointIO.__module__, AtomicCheckpointIO.__qualname__ = __name__, "AtomicCheckpointIO"
    return AtomicCheckpointIO


_LAZY = {"RunCheckpoints": _run_checkpoints_class, "AtomicCheckpointIO": _atomic_checkpoint_io_class}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        cls = _LAZY[name]()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_trainer(**kwargs: Any) -> Any:
    """``lightning.Trainer(**kwargs)`` with :class:`AtomicCheckpointIO` among its plugins (unless
    one is given) and configuration errors as one-line ``ValueError``\\ s naming the setting."""
    import lightning as L
    import torch
    from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    plugins = list(kwargs.pop("plugins", None) or [])
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(__getattr__("AtomicCheckpointIO")())
    accelerator = kwargs.get("accelerator", "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"accelerator {accelerator!r}: no CUDA GPU is available on this machine "
                         "(use cpu or auto)")
    devices = kwargs.get("devices", "auto")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices == 0:
        raise ValueError("devices must not be 0: give a count >= 1, -1 for all, a list of ids, or 'auto'")
    try:
        return L.Trainer(plugins=plugins, **kwargs)
    except MisconfigurationException as err:
        raise ValueError(f"Lightning Trainer settings: {str(err).strip().splitlines()[0]}") from None


def fit_run(trainer: Any, module: Any, keeper: Any = None, **fit_kwargs: Any) -> bool:
    """``trainer.fit(module, **fit_kwargs)`` of a run kept by ``keeper`` (a :class:`RunCheckpoints`,
    or ``None`` for a run that keeps nothing); returns whether an interrupt stopped it.

    Lightning's warnings that are expected in a run folder (few loader workers, a checkpoint folder
    that is not empty when resuming) are silenced.  After a Ctrl-C or SIGTERM, ``keeper`` has saved
    ``last.ckpt``: the first process says where training stopped and how to continue, and the
    ``SystemExit`` Lightning raises for SIGTERM is not passed on.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
        try:
            trainer.fit(module, **fit_kwargs)
        except SystemExit:
            if keeper is None or not keeper.interrupted:
                raise
    if keeper is None or not keeper.interrupted:
        return False
    if trainer.is_global_zero:
        epoch, step = keeper.stopped_at or (trainer.current_epoch, trainer.global_step)
        print(f"interrupted at epoch {epoch}, step {step}; saved {keeper.last_path}; continue with --resume",
              file=sys.stderr)
    return True
