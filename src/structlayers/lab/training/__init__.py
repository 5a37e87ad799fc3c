"""Lightning sanity runs: the classifier module, run configuration, metrics JSON and curves
(optimiser settings and curve plotting come from :mod:`structlayers.lightning`)."""

from structlayers.lab.training.module import ClassifierModule
from structlayers.lab.training.run import ModelConfig, TrainConfig, TrainResult, build_run_model, run_training

__all__ = [
    "ClassifierModule",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "build_run_model",
    "run_training",
]
