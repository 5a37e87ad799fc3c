"""MLP heads whose linear layers are structlayers plugins, and the two task models built on an
encoder: the neighbor-location classifier and the ligand-binding-affinity regressor."""

from atompaint.heads.mlp import HeadConfig, MLPHead, build_linear
from atompaint.heads.models import AffinityRegressor, NeighborLocClassifier

__all__ = ["AffinityRegressor", "HeadConfig", "MLPHead", "NeighborLocClassifier", "build_linear"]
