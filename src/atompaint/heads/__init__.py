"""MLP heads whose linear layers are structlayers plugins (dense or compressed, one config field)."""

from atompaint.heads.mlp import HeadConfig, MLPHead, build_linear

__all__ = ["HeadConfig", "MLPHead", "build_linear"]
