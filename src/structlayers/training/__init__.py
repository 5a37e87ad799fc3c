"""Lightning sanity runs: the classifier module, run configuration, metrics JSON and curves."""

from structlayers.training.curves import plot_curves, read_epoch_metrics, run_csv_files
from structlayers.training.module import ClassifierModule, OptimConfig
from structlayers.training.run import ModelConfig, TrainConfig, TrainResult, build_run_model, run_training

__all__ = [
    "ClassifierModule",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "build_run_model",
    "plot_curves",
    "read_epoch_metrics",
    "run_csv_files",
    "run_training",
]
