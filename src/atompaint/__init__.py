"""atompaint: protein structures voxelized into 3D images, the self-supervised neighbor-location
task, SE(3)-equivariant encoders and heads built from structlayers plugins."""

from typing import Any

__all__ = ["load"]


def __getattr__(name: str) -> Any:
    """Lazy re-export of :func:`atompaint.structures.load`, so importing the package stays cheap.

    ``voxelize`` is not re-exported here: the subpackage :mod:`atompaint.voxelize` has the same name and
    would replace the function as soon as it is imported; use ``from atompaint.voxelize import voxelize``.
    """
    if name == "load":
        from .structures import load

        return load
    raise AttributeError(f"module 'atompaint' has no attribute {name!r}")
