"""The Lightning side of a training run kept in a :class:`~structlayers.lightning.directory.RunDirectory`.

Lightning's own classes do the work wherever they give the guarantees of the documentation's
Reliability page (``docs/guide/reliability.md``); the code here adds only what they do not give:

- :class:`RunCheckpoints` is Lightning's ``ModelCheckpoint`` keeping one file,
  ``checkpoints/last.ckpt``, rewritten at the end of every training epoch (after that epoch's
  validation, so a resumed run continues exactly).  It is configured with ``monitor=None``, not
  ``save_last=True``: ``save_last`` writes ``last.ckpt`` only alongside a top-k save, so a run whose
  monitored metric stops improving would leave a stale one.  It adds what ``ModelCheckpoint`` lacks:

  - a save whenever training ends (``max_time`` and ``max_steps`` stop mid-epoch, and
    ``ModelCheckpoint`` saves at the end of training only for ``save_last``);
  - a save on SIGTERM and on no other exception: ``save_on_exception`` and
    ``OnExceptionCheckpoint`` save on every exception, so a crash or a second Ctrl-C would replace
    the last good checkpoint with the state of a failed step (and ``OnExceptionCheckpoint`` writes
    a file of its own that it deletes at teardown);
  - Ctrl-C, which Lightning turns into an abort: the first SIGINT stops after the current batch and
    saves, a second one aborts at once without saving; every process of a multi-process run
    reaches the same decision (the stop request is reduced over ranks);
  - the run's records: its metadata, written by the first process only after every process has
    checked the folder (a barrier), and its configuration, stored in every checkpoint (the
    best-model ones too) so that a resumed session is compared with what the weights were trained
    under.

- :class:`AtomicCheckpointIO` is Lightning's torch checkpoint I/O writing local files through a
  temporary file in the same folder, flushed to disk and renamed into place
  (:func:`~structlayers.lightning.checkpoints.atomic_save`).  Lightning before 2.4 writes in place;
  from 2.4 it stages the file in ``$TMPDIR`` and moves it, which is a copy, not an atomic rename,
  when ``$TMPDIR`` is on another filesystem (as on many clusters).  Either way a process killed
  while saving could leave a truncated checkpoint; with this one it leaves the previous file.
- :func:`build_trainer` is ``lightning.Trainer`` with :class:`AtomicCheckpointIO` and its
  configuration errors (an accelerator the machine lacks, a device count of 0) turned into
  one-line ``ValueError``\\ s.
- :func:`fit_run` is ``trainer.fit`` that returns, rather than raises, when :class:`RunCheckpoints`
  stopped the run on an interrupt, and says where it stopped and how to continue.
"""

from __future__ import annotations

import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from structlayers.lightning.checkpoints import LAST, RUN_KEY, atomic_save
from structlayers.lightning.directory import RunDirectory, RunPlan
from structlayers.utils.interrupt import StopRequest

__all__ = ["AtomicCheckpointIO", "RunCheckpoints", "build_trainer", "fit_run"]


class RunCheckpoints(ModelCheckpoint):
    """``ModelCheckpoint`` keeping ``last.ckpt`` of a run folder (see the module docs).

    ``plan`` (``None`` for runs that keep no folder, such as smoke tests) is recorded by the first
    process at the start of training; ``graceful_interrupt`` installs the Ctrl-C handler (main
    thread only).  The saves it adds go through ``ModelCheckpoint``'s own skip rule and writer, so
    no step is saved twice and nothing is saved by ``fast_dev_run`` or the sanity check.
    """

    def __init__(self, directory: RunDirectory, plan: RunPlan | None = None, *,
                 graceful_interrupt: bool = True) -> None:
        super().__init__(dirpath=directory.checkpoints, filename=Path(LAST).stem, monitor=None, save_top_k=1,
                         save_on_train_epoch_end=True, enable_version_counter=False)
        self.directory, self.plan, self.graceful_interrupt = directory, plan, graceful_interrupt
        self.last_path: Path = directory.checkpoints / LAST
        #: Whether training stopped on a Ctrl-C or SIGTERM (``last.ckpt`` holds where it stopped).
        self.interrupted = False
        #: ``(epoch, global_step)`` where an interrupted run stopped, and the signal that stopped it.
        self.stopped_at: tuple[int, int] | None = None
        self.stop_signal: int | None = None
        self._stop = StopRequest(f"interrupted: stopping after the current batch and saving {self.last_path} "
                                 "(Ctrl-C again to stop at once without saving)")

    # -- the run folder ---------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            # Every process has planned (checked the folder) before it got here.
            trainer.strategy.barrier("structlayers-run-checked")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self.plan is not None and trainer.is_global_zero:
            self.directory.record(self.plan)
        trainer.strategy.barrier("structlayers-run-recorded")
        self._last_global_step_saved = trainer.global_step  # a resumed run does not re-save what it loaded
        # Installed after Lightning saved the signal handlers it restores when fit ends.
        if self.graceful_interrupt:
            self._stop.__enter__()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self.plan is not None:
            checkpoint[RUN_KEY] = {"config": self.plan.config, "module": type(pl_module).__qualname__}

    # -- last.ckpt beyond the end of each epoch ---------------------------------------------
    def _save_last(self, trainer: pl.Trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_checkpoint(trainer, str(self.last_path))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._save_last(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._stop.restore()  # Lightning skips the teardown hooks after an exception
        if isinstance(exception, SIGTERMException):
            self.interrupted, self.stop_signal = True, int(signal.SIGTERM)
            self.stopped_at = (trainer.current_epoch, trainer.global_step)
            self._save_last(trainer)

    # -- Ctrl-C -----------------------------------------------------------------------------
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._stop.restore()

    def _check_stop(self, trainer: pl.Trainer) -> None:
        stop = self._stop.requested
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop and not self.interrupted:
            self._save_last(trainer)
            self.interrupted, self.stop_signal = True, int(signal.SIGINT)
            self.stopped_at = (trainer.current_epoch, trainer.global_step)
            trainer.should_stop = True
            rank_zero_info(f"stopped at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                           f"saved {self.last_path}")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._check_stop(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._check_stop(trainer)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint I/O, writing local files atomically (see the module docs)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, path)
        return None


def build_trainer(**kwargs: Any) -> pl.Trainer:
    """``lightning.Trainer(**kwargs)`` with :class:`AtomicCheckpointIO` among its plugins (unless
    one is given) and configuration errors as one-line ``ValueError``\\ s naming the setting.

    ``use_distributed_sampler`` defaults to ``False``: the project's training loaders use
    :class:`~structlayers.utils.sampling.EpochSampler`, which splits the items by rank itself, and
    Lightning's wrapper would split them a second time (a loader without a sampler, such as the
    lab's validation loader, is then read whole by every rank)."""
    kwargs.setdefault("use_distributed_sampler", False)
    plugins = list(kwargs.pop("plugins", None) or [])
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
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


def fit_run(trainer: pl.Trainer, module: pl.LightningModule, keeper: RunCheckpoints | None = None,
            **fit_kwargs: Any) -> bool:
    """``trainer.fit(module, **fit_kwargs)`` of a run kept by ``keeper`` (``None`` for a run that
    keeps nothing); returns whether an interrupt stopped it.

    Lightning's warnings that are expected in a run folder (few loader workers, a checkpoint folder
    that is not empty when resuming) are silenced.  After a Ctrl-C or SIGTERM, ``keeper`` has saved
    ``last.ckpt``: the first process says where training stopped and how to continue, and the
    ``SystemExit`` Lightning raises for SIGTERM is not passed on.
    """
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
