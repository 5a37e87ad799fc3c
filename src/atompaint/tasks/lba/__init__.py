"""Ligand binding affinity (Atom3D LBA): the LMDB reader/writer, the voxelized dataset and
DataModule, the regressor, its LightningModule and its training config.

Names are imported on first use (see :mod:`atompaint`), so the light modules do not import Lightning.
"""

from atompaint._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["AtomLMDB", "write_lmdb"], "lmdb_io"),
    **dict.fromkeys(["LBADataConfig", "LBADataset", "affinity_of", "atoms_from_frame", "image_channels",
                     "split_paths"], "dataset"),
    "LBADataModule": "datamodule",
    "AffinityRegressor": "model",
    **dict.fromkeys(["LBATask", "load_pretrained_encoder"], "module"),
    **dict.fromkeys(["FinetuneConfig", "LBARunConfig"], "config"),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
