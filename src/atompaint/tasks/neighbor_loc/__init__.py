"""The neighbor-location task: view-pair geometry, the dataset and DataModule, the classifier, its
LightningModule, its training config, its evaluation with controls and the parameter/FLOP/memory
table of its models.

``NeighborLocDataModule`` yields batches ``(view_a, view_b, label, b_draws, b_fallback)``: two float32
``(B, C, L, L, L)`` image tensors, an int64 ``(B,)`` tensor of neighbour-direction indices, and how
each view B was drawn.  Names are imported on first use (see :mod:`atompaint`), so the light modules
do not import Lightning.
"""

from atompaint._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["DIRECTION_SETS", "ViewPair", "make_view_pair", "neighbor_directions", "views_overlap"],
                    "geometry"),
    **dict.fromkeys(["EpochSampler", "Example", "NeighborLocConfig", "NeighborLocDataConfig", "NeighborLocDataset",
                     "NeighborLocItem"], "dataset"),
    **dict.fromkeys(["NeighborLocDataModule", "default_index_path", "split_structures"], "datamodule"),
    "NeighborLocClassifier": "model",
    "NeighborLocTask": "module",
    "NeighborLocRunConfig": "config",
    **dict.fromkeys(["EvalResult", "evaluate_checkpoint", "evaluate_dataset", "view_atom_counts"], "evaluate"),
    **dict.fromkeys(["CountTable", "ModelCount", "PartCount", "build_count_table", "count_neighbor_loc"], "count"),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
