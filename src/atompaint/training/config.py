"""Training configurations: dataclasses loaded from YAML, validated field by field.

A config file has the sections ``encoder`` (:class:`~atompaint.encoders.EncoderConfig`), ``head``
(:class:`~atompaint.heads.HeadConfig`), ``data``, ``optim`` and ``trainer``.  Unknown keys are
errors (a typo must not silently fall back to a default).  The encoder's ``in_channels`` and
``input_size`` default to the data's image channels and side length.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from atompaint.encoders import EncoderConfig
from atompaint.heads import HeadConfig

Task = Literal["neighbor-loc", "lba"]


@dataclass
class ImageConfig:
    """Voxel images (see :class:`atompaint.voxelize.ImageParams`)."""

    length_voxels: int = 21
    resolution_A: float = 0.75
    channels: list[list[str]] = field(default_factory=lambda: [["C"], ["N"], ["O"], ["S", "SE"], ["*"]])
    radius_A: float = 0.5

    def to_params(self) -> Any:
        from atompaint.voxelize import ImageParams

        return ImageParams(
            length_voxels=self.length_voxels,
            resolution_A=self.resolution_A,
            channels=tuple(tuple(c) for c in self.channels),
            radius_A=self.radius_A,
        )


@dataclass
class NeighborLocDataConfig:
    """Where the structures are and how view pairs are made (see :mod:`atompaint.data`)."""

    structure_dir: str = ""
    index_path: str | None = None
    image: ImageConfig = field(default_factory=ImageConfig)
    directions: str = "faces"
    distance_A: float | None = None
    max_translation_A: float = 2.0
    max_rotation_deg: float = 20.0
    batch_size: int = 16
    num_workers: int = 0
    train_size: int = 10_000
    val_size: int = 1_000
    val_fraction: float = 0.1
    seed: int = 0


@dataclass
class LBADataConfig:
    """An Atom3D LBA data set: ``root`` holds ``train``/``val``/``test`` LMDBs (or a split folder)."""

    root: str = ""
    split: str = "sequence-identity-30"
    image: ImageConfig = field(default_factory=ImageConfig)
    ligand_channels: bool = True
    batch_size: int = 16
    num_workers: int = 0


@dataclass
class OptimConfig:
    """AdamW, optionally with a learning-rate schedule (``plateau`` halves it when val loss stalls)."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: Literal["plateau", "cosine"] | None = "plateau"


@dataclass
class TrainerConfig:
    """Lightning ``Trainer`` settings; ``devices``/``strategy`` can be overridden on the command line."""

    max_epochs: int = 10
    max_time: str | None = None
    accelerator: str = "auto"
    devices: str | int = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = None
    seed: int = 0


@dataclass
class FinetuneConfig:
    """LBA fine-tuning: start the encoder from a neighbor-location checkpoint, frozen at first."""

    pretrained: str | None = None
    freeze_encoder_epochs: int = 0


@dataclass
class TrainConfig:
    """Everything one training run needs."""

    name: str
    task: Task
    encoder: EncoderConfig
    head: HeadConfig = field(default_factory=HeadConfig)
    data: NeighborLocDataConfig | LBADataConfig = field(default_factory=NeighborLocDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls: type, values: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, recursing into dataclass-typed fields."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        target = next((o for o in options if dataclasses.is_dataclass(o)), None)
        kwargs[key] = _build(target, value, f"{where}.{key}") if target is not None and isinstance(value, dict) else value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{where}: {err}") from err


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from plain data (e.g. parsed YAML)."""
    values = dict(values)
    for required in ("name", "task", "encoder"):
        if required not in values:
            raise ValueError(f"config: missing required key {required!r}")
    task = values["task"]
    if task not in ("neighbor-loc", "lba"):
        raise ValueError(f"config: task must be 'neighbor-loc' or 'lba', got {task!r}")
    data_cls = NeighborLocDataConfig if task == "neighbor-loc" else LBADataConfig
    data = _build(data_cls, values.pop("data", {}) or {}, "data")
    encoder_values = dict(values.pop("encoder") or {})
    channels = len(data.image.channels) * (2 if task == "lba" and data.ligand_channels else 1)
    encoder_values.setdefault("in_channels", channels)
    encoder_values.setdefault("input_size", data.image.length_voxels)
    encoder = _build(EncoderConfig, encoder_values, "encoder")
    if encoder.in_channels != channels or encoder.input_size != data.image.length_voxels:
        raise ValueError(
            f"encoder expects {encoder.in_channels} channels of {encoder.input_size}^3 voxels, but the data "
            f"makes {channels} channels of {data.image.length_voxels}^3"
        )
    sections = {
        "head": HeadConfig, "optim": OptimConfig, "trainer": TrainerConfig, "finetune": FinetuneConfig,
    }
    built = {key: _build(cls, values.pop(key) or {}, key) for key, cls in sections.items() if key in values}
    name, task = values.pop("name"), values.pop("task")
    if values:
        raise ValueError(f"config: unknown section(s) {', '.join(sorted(values))}")
    return TrainConfig(name=str(name), task=task, encoder=encoder, data=data, **built)


def load_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read a YAML training config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    return config_from_dict(values)
