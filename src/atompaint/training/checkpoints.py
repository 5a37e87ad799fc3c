"""Reading the checkpoint of an atompaint training run of a given task, for the commands that
start from one (``atompaint evaluate``, LBA fine-tuning): one-line errors that name the file and
say what it is instead (empty, truncated, not a torch file, a checkpoint of another task or tool)."""

from __future__ import annotations

import os
from typing import Any

from structlayers.lightning.checkpoints import CheckpointError, describe_contents, load_checkpoint, stored_config


def read_task_checkpoint(path: str | os.PathLike[str], task: str, what: str = "checkpoint") -> dict[str, Any]:
    """The contents of ``path``, a checkpoint written by ``atompaint train <task>``; anything else
    is a :class:`~structlayers.lightning.CheckpointError` starting with ``what`` and the path."""
    obj = load_checkpoint(path, what=what)
    config = stored_config(obj)
    if config is None or config.get("task") != task:
        raise CheckpointError(f"{what} {path} is {describe_contents(obj)}, not a checkpoint of "
                              f"`atompaint train {task}`")
    return obj
