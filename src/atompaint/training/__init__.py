"""Lightning training of the neighbor-location and LBA tasks, configured from YAML."""

from atompaint.training.config import (
    FinetuneConfig,
    ImageConfig,
    LBADataConfig,
    NeighborLocDataConfig,
    OptimConfig,
    TrainConfig,
    TrainerConfig,
    config_from_dict,
    load_config,
)
from atompaint.training.curves import plot_curves
from atompaint.training.run import RunResult, build_datamodule, build_task, find_last_checkpoint, train
from atompaint.training.tasks import LBATask, NeighborLocTask, load_pretrained_encoder

__all__ = [
    "FinetuneConfig",
    "ImageConfig",
    "LBADataConfig",
    "LBATask",
    "NeighborLocDataConfig",
    "NeighborLocTask",
    "OptimConfig",
    "RunResult",
    "TrainConfig",
    "TrainerConfig",
    "build_datamodule",
    "build_task",
    "config_from_dict",
    "find_last_checkpoint",
    "load_config",
    "load_pretrained_encoder",
    "plot_curves",
    "train",
]
