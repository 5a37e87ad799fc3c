"""Lightning ``Trainer`` settings as a dataclass, shared by every trainer built on structlayers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TrainerConfig:
    """What goes to ``lightning.Trainer`` unchanged (``devices``, ``strategy`` and ``num_nodes``
    select Lightning's own multi-device strategies, e.g. ``ddp``), and whether to show progress."""

    max_epochs: int = 10
    #: Wall-clock limit, Lightning's ``DD:HH:MM:SS`` (e.g. ``00:01:00:00`` for one hour).
    max_time: str | None = None
    accelerator: str = "auto"
    devices: int | list[int] | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str | None = None
    #: Run N training and validation batches only, as a smoke test (writes no checkpoint).
    fast_dev_run: int = 0
    #: Batches per epoch: a fraction (<= 1.0) or a count.
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = None
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.fast_dev_run < 0:
            raise ValueError(f"fast_dev_run must be >= 0, got {self.fast_dev_run}")
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {self.num_nodes}")
        if isinstance(self.devices, int) and not isinstance(self.devices, bool) and self.devices == 0:
            raise ValueError("devices must not be 0: give a count >= 1, -1 for all, a list of ids, or 'auto'")

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``lightning.Trainer``."""
        return {
            "max_epochs": self.max_epochs, "max_time": self.max_time, "accelerator": self.accelerator,
            "devices": self.devices, "strategy": self.strategy, "num_nodes": self.num_nodes,
            "precision": self.precision, "fast_dev_run": self.fast_dev_run or False,
            "limit_train_batches": self.limit_train_batches, "limit_val_batches": self.limit_val_batches,
            "log_every_n_steps": self.log_every_n_steps, "gradient_clip_val": self.gradient_clip_val,
            "enable_progress_bar": self.progress_bar,
        }
