"""Real datasets for the sanity runs: MNIST (IDX) and CIFAR-10 (python batches or npz) readers and
Lightning DataModules.  The official MNIST test split is packaged in ``structlayers/data/mnist``."""

from structlayers.lab.data.datamodule import (
    DATAMODULES,
    CIFAR10DataModule,
    DataConfig,
    ImageDataModule,
    MNISTDataModule,
)
from structlayers.lab.data.idx import DataError, read_cifar_batch, read_idx, write_cifar_batch, write_idx
from structlayers.lab.data.sources import ENV_VAR, ImageSplits, load_cifar10, load_mnist

__all__ = [
    "DATAMODULES",
    "ENV_VAR",
    "CIFAR10DataModule",
    "DataConfig",
    "DataError",
    "ImageDataModule",
    "ImageSplits",
    "MNISTDataModule",
    "load_cifar10",
    "load_mnist",
    "read_cifar_batch",
    "read_idx",
    "write_cifar_batch",
    "write_idx",
]
