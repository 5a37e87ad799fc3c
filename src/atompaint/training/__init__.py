"""Training runs of any task: the YAML config loaded into the task's dataclasses, the LightningModule
base, and the run loop in its run folder (logs, checkpoints, resume with a checked configuration,
learning curves through :mod:`structlayers.lightning`).

Names are imported on first use (see :mod:`atompaint`): loading a config does not import Lightning.
"""

from atompaint._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["RunConfig", "config_from_dict", "load_config", "task_config_class"], "config"),
    "TaskModule": "module",
    **dict.fromkeys(["RESUME_POLICY", "RunResult", "plan_run", "run_directory", "train"], "run"),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
