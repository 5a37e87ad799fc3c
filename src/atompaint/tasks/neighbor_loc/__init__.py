"""The neighbor-location task: view-pair geometry, the constructions that choose the direction, the
dataset and DataModule, the classifier, its LightningModule, its training config, zero-parameter
density rules, its evaluation with controls and the parameter/FLOP/memory table of its models.

``NeighborLocDataModule`` yields batches ``(view_a, view_b, label, b_draws, b_fallback, mask)``: two
float32 ``(B, C, L, L, L)`` image tensors, an int64 ``(B,)`` tensor of neighbour-direction indices, how
each example was drawn, and the bool ``(B, K)`` mask of the directions each label could take.  Names
are imported on first use (see :mod:`atompaint`), so the light modules do not import Lightning.
"""

from atompaint._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["DIRECTION_SETS", "ViewPair", "make_view_pair", "neighbor_centers", "neighbor_directions",
                     "views_overlap"],
                    "geometry"),
    **dict.fromkeys(["EpochSampler", "Example", "NeighborLocConfig", "NeighborLocDataConfig", "NeighborLocDataset",
                     "NeighborLocItem"], "dataset"),
    **dict.fromkeys(["NeighborLocDataModule", "default_index_path", "split_structures"], "datamodule"),
    "NeighborLocClassifier": "model",
    "NeighborLocTask": "module",
    "NeighborLocRunConfig": "config",
    **dict.fromkeys(["CONSTRUCTIONS", "ConstructionError", "DrawCheck", "check_draw"], "constructions"),
    **dict.fromkeys(["RULES", "binomial_se", "chance_accuracy", "chance_se", "density_centroids", "mask_logits",
                     "masked_argmax", "rule_hits", "rule_predictions"], "controls"),
    **dict.fromkeys(["ControlScore", "EvalResult", "VIEW_CONTROLS", "derangement", "evaluate_checkpoint",
                     "evaluate_dataset", "score_rules", "view_atom_counts"], "evaluate"),
    **dict.fromkeys(["CountTable", "ModelCount", "PartCount", "build_count_table", "count_neighbor_loc"], "count"),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
