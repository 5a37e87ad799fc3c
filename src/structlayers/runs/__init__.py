"""Support for training runs shared by every trainer built on structlayers (the lab's sanity runs,
atompaint's tasks): the optimiser and Lightning ``Trainer`` settings, and learning curves read from
Lightning's CSV logs.
Nothing here imports Lightning; plotting imports matplotlib only when called."""

from structlayers.runs.curves import plot_curves, read_epoch_metrics, run_csv_files
from structlayers.runs.optim import OPTIMIZERS, SCHEDULES, OptimConfig
from structlayers.runs.trainer import TrainerConfig

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimConfig",
    "TrainerConfig",
    "plot_curves",
    "read_epoch_metrics",
    "run_csv_files",
]
