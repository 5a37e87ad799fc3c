"""Support for training runs shared by every trainer built on structlayers (the lab's sanity runs,
atompaint's tasks): the optimiser and Lightning ``Trainer`` settings, learning curves read from
Lightning's CSV logs, the run folder (:mod:`~structlayers.runs.directory`: start, overwrite, resume
with a checked configuration), its checkpoints (:mod:`~structlayers.runs.checkpoints`), resuming
with new optimisation settings (:mod:`~structlayers.runs.resume`) and the Lightning callback and
trainer factory that tie them together (:mod:`structlayers.runs.callbacks`, not imported here).
Nothing here imports Lightning; plotting imports matplotlib only when called."""

from structlayers.runs.checkpoints import CheckpointError, CheckpointInfo, checkpoint_info, newest_checkpoint
from structlayers.runs.curves import plot_curves, read_epoch_metrics, run_csv_files, run_title
from structlayers.runs.directory import ConfigChange, ResumePolicy, RunConflictError, RunDirectory, RunPlan
from structlayers.runs.optim import OPTIMIZERS, SCHEDULES, OptimConfig
from structlayers.runs.resume import retarget_optimizer
from structlayers.runs.trainer import TrainerConfig

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "CheckpointError",
    "CheckpointInfo",
    "ConfigChange",
    "OptimConfig",
    "ResumePolicy",
    "RunConflictError",
    "RunDirectory",
    "RunPlan",
    "TrainerConfig",
    "checkpoint_info",
    "newest_checkpoint",
    "plot_curves",
    "read_epoch_metrics",
    "retarget_optimizer",
    "run_csv_files",
    "run_title",
]
