"""Lightning DataModules over in-memory uint8 image arrays.

Images stay uint8 in memory; normalisation and the training augmentation (random shifts for
MNIST, the standard random crop and flip for CIFAR-10) run on each batch after it reaches the device.
Shuffling and augmentation draw from generators seeded by ``(seed, epoch)`` and ``(seed, global step)``,
so a run resumed from a checkpoint sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from structlayers.lab.data.sources import ImageSplits, load_cifar10, load_mnist
from structlayers.utils.sampling import EpochSampler

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def random_crop_flip(images: Tensor, padding: int, generator: torch.Generator, flip: bool = True) -> Tensor:
    """Zero-pad by ``padding``, crop back to size at a random offset and (with ``flip``) mirror
    half the images horizontally (the standard CIFAR augmentation), vectorised over the batch."""
    b, c, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device).to(device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device).to(device)
    mirror = (torch.rand(b, generator=generator, device=generator.device).to(device) < 0.5) & flip
    rows = (oy[:, None] + torch.arange(h, device=device))[:, None, :, None]
    cols = ox[:, None] + torch.arange(w, device=device)
    cols = torch.where(mirror[:, None], cols.flip(-1), cols)[:, None, None, :]
    return padded[torch.arange(b, device=device)[:, None, None, None],
                  torch.arange(c, device=device)[None, :, None, None], rows, cols]


@dataclass
class DataConfig:
    """Where the data comes from and how it is batched."""

    data_dir: str | Path | None = None
    batch_size: int = 128
    eval_batch_size: int = 1000
    num_workers: int = 0
    seed: int = 0
    augment: bool = True
    #: Images held out for validation when only one split is available (the MNIST test split),
    #: drawn with ``split_seed`` (fixed apart from ``seed`` so every run validates on the same images).
    val_size: int = 2000
    split_seed: int = 0
    #: Largest random shift of the training augmentation in pixels (the dataset's default if None).
    max_shift: int | None = None


class ImageDataModule(L.LightningDataModule):
    """Train / validation loaders over :class:`ImageSplits` with per-batch normalisation."""

    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    #: Training augmentation: random translations by up to ``crop_padding`` pixels, and mirroring.
    crop_padding: int = 0
    flip: bool = False

    def __init__(self, config: DataConfig | None = None, splits: ImageSplits | None = None) -> None:
        super().__init__()
        self.config = config or DataConfig()
        self.splits = splits
        self._stats: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def load(self) -> ImageSplits:
        """Read the dataset files (subclasses name the dataset)."""
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one image, ``(C, H, W)``."""
        return tuple(self._splits().train_images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self._splits().classes)

    def _splits(self) -> ImageSplits:
        if self.splits is None:
            self.splits = self.load()
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        s = self._splits()
        self.train_set = TensorDataset(torch.from_numpy(s.train_images), torch.from_numpy(s.train_labels))
        self.val_set = TensorDataset(torch.from_numpy(s.val_images), torch.from_numpy(s.val_labels))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            sampler=EpochSampler(len(self.train_set), self.config.seed),
            num_workers=self.config.num_workers,
            drop_last=len(self.train_set) > self.config.batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.config.eval_batch_size, num_workers=self.config.num_workers)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 images to normalised float32 (the channel statistics built once per device, not
        copied to it on every batch)."""
        if images.device not in self._stats:
            self._stats[images.device] = tuple(
                torch.tensor(v, device=images.device).view(1, -1, 1, 1) for v in (self.mean, self.std))
        mean, std = self._stats[images.device]
        return (images.float() / 255.0 - mean) / std

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        images = self.normalize(images)
        trainer = self.trainer
        shift = self.crop_padding if self.config.max_shift is None else self.config.max_shift
        if self.config.augment and (shift or self.flip) and trainer is not None and trainer.training:
            seed = self.config.seed * 1_000_003 + trainer.global_step * 257 + trainer.global_rank
            images = random_crop_flip(images, shift, torch.Generator(device=images.device).manual_seed(seed), self.flip)
        return images, labels


class MNISTDataModule(ImageDataModule):
    """MNIST (see :func:`~structlayers.lab.data.sources.load_mnist`) with random shifts of up to 2
    pixels (digits are not mirror-symmetric, so no flips)."""

    mean, std = MNIST_MEAN, MNIST_STD
    crop_padding = 2

    def load(self) -> ImageSplits:
        return load_mnist(self.config.data_dir, val_size=self.config.val_size, split_seed=self.config.split_seed)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (see :func:`~structlayers.lab.data.sources.load_cifar10`) with random crop and flip."""

    mean, std = CIFAR10_MEAN, CIFAR10_STD
    crop_padding, flip = 4, True

    def load(self) -> ImageSplits:
        return load_cifar10(self.config.data_dir)


DATAMODULES: dict[str, type[ImageDataModule]] = {"mnist": MNISTDataModule, "cifar10": CIFAR10DataModule}
