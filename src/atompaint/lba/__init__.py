"""Ligand binding affinity (Atom3D LBA): LMDB reader/writer, voxelized dataset and DataModule."""

from atompaint.lba.dataset import LBADataModule, LBADataset, affinity_of, atoms_from_frame, split_paths
from atompaint.lba.lmdb_io import AtomLMDB, write_lmdb

__all__ = ["AtomLMDB", "LBADataModule", "LBADataset", "affinity_of", "atoms_from_frame", "split_paths", "write_lmdb"]
