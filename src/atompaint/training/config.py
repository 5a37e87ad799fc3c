"""Training configurations: a YAML file loads into the domain dataclasses themselves.

A config file has the keys ``name``, ``task``, ``seed`` and the sections ``encoder``
(:class:`~atompaint.encoders.EncoderConfig`), ``head`` (:class:`~atompaint.heads.HeadConfig`),
``data`` (the task's data config), ``optim`` (:class:`structlayers.lightning.OptimConfig`) and
``trainer`` (:class:`structlayers.lightning.TrainerConfig`), plus any section of the task's own
(``finetune`` for LBA).  Values are type-checked and unknown keys are errors (a typo must not
silently fall back to a default); a key left out keeps the default the run config declares for
its section.  The encoder's ``in_channels`` and ``input_size`` default to the data's.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from atompaint.encoders import EncoderConfig
from atompaint.heads import HeadConfig
from atompaint.tasks import TASKS
from structlayers.configs import ConfigError, field_default, from_dict, replace_fields, to_dict
from structlayers.lightning import OptimConfig, TrainerConfig

if TYPE_CHECKING:
    import lightning.pytorch as pl


@dataclass
class RunConfig:
    """What every training run has; each task's config adds ``task``, its ``data`` and its own sections.

    The optimiser defaults to AdamW with the learning rate halved when the validation loss stalls
    (``plateau``).  ``seed`` seeds Python, numpy and torch (and the loader workers) before the run.
    """

    name: str
    encoder: EncoderConfig
    #: The task's data config; it gives the encoder's input (``input_channels``, ``input_size``).
    data: Any
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(optimizer="adamw", schedule="plateau"))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0

    #: ``(metric, "max" | "min")`` that chooses the best checkpoint.
    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a run needs a name")
        enc, data = self.encoder, self.data
        if enc.in_channels != data.input_channels or enc.input_size != data.input_size:
            raise ValueError(
                f"encoder expects {enc.in_channels} channels of {enc.input_size}^3 voxels, but the data "
                f"makes {data.input_channels} channels of {data.input_size}^3"
            )

    def build_datamodule(self) -> pl.LightningDataModule:
        raise NotImplementedError

    def build_module(self, datamodule: pl.LightningDataModule, *, resuming: bool = False) -> pl.LightningModule:
        """The task's LightningModule; ``resuming``: its weights will come from a checkpoint, so
        initial weights from elsewhere (a pretrained encoder) are not loaded."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :func:`config_from_dict` turns back into this config."""
        return to_dict(self)


def task_config_class(task: Any) -> type[RunConfig]:
    """The run config class of ``task`` (``neighbor-loc`` or ``lba``)."""
    if task not in TASKS:
        raise ConfigError(f"config.task: expected one of {', '.join(map(repr, TASKS))}, got {task!r}")
    module, _, name = TASKS[task].partition(":")
    return getattr(importlib.import_module(module), name)


def config_from_dict(values: Mapping[str, Any]) -> RunConfig:
    """The run config of ``values["task"]`` from plain data (parsed YAML, or a checkpoint's
    :meth:`RunConfig.to_dict`)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config: expected a mapping, got {type(values).__name__}")
    values = dict(values)
    for required in ("name", "task", "encoder"):
        if required not in values:
            raise ConfigError(f"config: missing required key {required!r}")
    cls = task_config_class(values["task"])
    data = replace_fields(field_default(cls, "data"), values.pop("data", None) or {}, "data")
    encoder = from_dict(EncoderConfig, {"in_channels": data.input_channels, "input_size": data.input_size,
                                        **(values.pop("encoder") or {})}, "encoder")
    try:
        config = cls(name=str(values.pop("name")), encoder=encoder, data=data)
    except ValueError as err:
        raise ConfigError(f"config: {err}") from err
    return replace_fields(config, values, "config")


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read a YAML training config; malformed YAML is a :class:`ConfigError` naming the file, line
    and column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    try:
        return config_from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
