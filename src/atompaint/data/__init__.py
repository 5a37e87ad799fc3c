"""The neighbour-location task: view-pair geometry, the Dataset and the Lightning DataModule.

``NeighborLocDataModule`` yields batches ``(view_a, view_b, label)``: two float32 ``(B, C, L, L, L)``
image tensors and an int64 ``(B,)`` tensor of neighbour-direction indices.
"""

from atompaint._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["NeighborLocDataModule", "default_index_path", "split_structures"], "datamodule"),
    **dict.fromkeys(["EpochSampler", "Example", "NeighborLocConfig", "NeighborLocDataset"], "dataset"),
    **dict.fromkeys(["DIRECTION_SETS", "ViewPair", "make_view_pair", "neighbor_directions", "random_rotation",
                     "random_small_rotation"], "geometry"),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
