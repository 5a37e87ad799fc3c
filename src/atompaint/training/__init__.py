"""Lightning training of the neighbor-location and LBA tasks, configured from YAML."""

from atompaint._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["FinetuneConfig", "ImageConfig", "LBADataConfig", "NeighborLocDataConfig", "OptimConfig",
                     "TrainConfig", "TrainerConfig", "config_from_dict", "load_config"], "config"),
    "plot_curves": "curves",
    **dict.fromkeys(["RunResult", "build_datamodule", "build_task", "find_last_checkpoint", "train"], "run"),
    **dict.fromkeys(["LBATask", "NeighborLocTask", "load_pretrained_encoder"], "tasks"),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
