"""Lightning integration (installed with the ``lab`` extra): what every trainer built on structlayers
shares (the lab's sanity runs, atompaint's tasks).

- the run folder (:mod:`~structlayers.lightning.directory`: start, overwrite, resume with a checked
  configuration) and its checkpoints (:mod:`~structlayers.lightning.checkpoints`: chosen by
  recorded progress, read with one-line errors, written atomically);
- the optimiser and ``Trainer`` settings (:mod:`~structlayers.lightning.optim`,
  :mod:`~structlayers.lightning.trainer`) and resuming with new optimisation settings
  (:mod:`~structlayers.lightning.resume`);
- learning curves read from Lightning's CSV logs (:mod:`~structlayers.lightning.curves`);
- the Lightning callback, checkpoint I/O and trainer that tie them together
  (:mod:`structlayers.lightning.callbacks`).

Only :mod:`~structlayers.lightning.callbacks` imports Lightning, and nothing here imports that
module: configurations and checkpoints load without Lightning (atompaint reads its YAML configs, and
commands read weights, without paying for it).  Plotting imports matplotlib only when called.
The library never imports this package (``tests/test_architecture.py``)."""

from structlayers.lightning.checkpoints import CheckpointError, CheckpointInfo, checkpoint_info, newest_checkpoint
from structlayers.lightning.curves import plot_curves, read_epoch_metrics, run_csv_files, run_title
from structlayers.lightning.directory import ConfigChange, ResumePolicy, RunConflictError, RunDirectory, RunPlan
from structlayers.lightning.optim import OPTIMIZERS, SCHEDULES, OptimConfig
from structlayers.lightning.resume import retarget_optimizer
from structlayers.lightning.trainer import TrainerConfig

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
