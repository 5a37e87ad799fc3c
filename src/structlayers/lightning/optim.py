"""The optimiser and learning-rate schedule of a training run, as one dataclass."""

from __future__ import annotations

import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch

Optimizer = Literal["adam", "adamw", "sgd"]
#: ``cosine`` and ``onecycle`` step every batch over the run; ``plateau`` multiplies the rate by
#: ``plateau_factor`` when the monitored validation metric stalls for ``plateau_patience`` epochs.
Schedule = Literal["cosine", "onecycle", "plateau", "constant"]
OPTIMIZERS: tuple[str, ...] = typing.get_args(Optimizer)
SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule; :meth:`configure` builds them in the form a
    ``LightningModule.configure_optimizers`` returns."""

    optimizer: Optimizer = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    #: SGD momentum (Nesterov when positive).
    momentum: float = 0.9
    schedule: Schedule = "cosine"
    plateau_factor: float = 0.5
    plateau_patience: int = 2

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 < self.plateau_factor < 1 or self.plateau_patience < 0:
            raise ValueError("plateau_factor must be in (0, 1) and plateau_patience >= 0")

    def build_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                                   nesterov=self.momentum > 0)
        cls = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=self.lr, weight_decay=self.weight_decay)

    def configure(self, params: Iterable[torch.nn.Parameter], total_steps: int, monitor: str = "val/loss") -> Any:
        """The optimiser and its scheduler for a run of ``total_steps`` optimiser steps; ``plateau``
        watches ``monitor`` once per epoch."""
        opt = self.build_optimizer(params)
        if self.schedule == "constant":
            return opt
        if self.schedule == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=self.plateau_factor,
                                                               patience=self.plateau_patience)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": monitor, "interval": "epoch"}}
        total = max(1, int(total_steps))
        if self.schedule == "onecycle":
            step: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(opt, self.lr,
                                                                                             total_steps=total)
        else:
            step = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": step, "interval": "step"}}
