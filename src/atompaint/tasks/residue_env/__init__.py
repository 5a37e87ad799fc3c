"""The amino-acid environment task (Torng & Altman 2017; Atom3D RES): which of the 20 amino acids
sits at the centre of an image of its surroundings, its own atoms removed.  The residue rules, the
dataset and DataModule (split by structure), the classifier, its LightningModule, its training
config and its evaluation with controls.

``ResidueEnvDataModule`` yields batches ``(image, label)``: a float32 ``(B, C, L, L, L)`` image and
an int64 ``(B,)`` class in ``[0, 20)`` (:data:`AMINO_ACIDS`).  Names are imported on first use (see
:mod:`atompaint`), so the light modules do not import Lightning.
"""

from atompaint._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["AMINO_ACIDS", "MODIFIED_PARENTS", "ResidueCounts", "StructureResidues", "find_residues",
                     "ideal_cb", "residue_label", "residue_ordinals"], "residues"),
    **dict.fromkeys(["ResidueEnvConfig", "ResidueEnvDataConfig", "ResidueEnvDataset", "ResidueEnvItem",
                     "ResidueIndex", "build_residue_index"], "dataset"),
    **dict.fromkeys(["ResidueEnvDataModule", "split_structures3"], "datamodule"),
    "ResidueEnvClassifier": "model",
    "ResidueEnvTask": "module",
    "ResidueEnvRunConfig": "config",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
