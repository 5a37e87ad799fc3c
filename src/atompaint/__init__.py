"""atompaint: protein structures voxelized into 3D images, the self-supervised neighbor-location
task, SE(3)-equivariant encoders and heads built from structlayers plugins.

Layout, from the library floor up (a package imports only from those listed before it)::

    structures/  structure files -> atom tables (gemmi)
    voxelize/    atom tables -> (C, L, L, L) images; ImageParams; rotations
    origins/     the SQLite index of view centres
    encoders/    escnn encoders, their export to plain torch and their costs
    heads/       MLP heads from structlayers plugins
    tasks/       one package per task: neighbor_loc/, lba/ (data, model, LightningModule, config)
    training/    YAML -> a task's run config; the LightningModule base; the run loop
    cli/         the ``atompaint`` command

The floor (structures ... heads) never imports Lightning.

One ``__init__`` rule: a package imports its public names explicitly, except where that import
would be expensive for someone who needs only part of it -- the packages holding a Lightning module
(``tasks.neighbor_loc``, ``tasks.lba``, ``training``) and this root package, which every
``atompaint`` import runs.  Those list their names in an export map served on first access by
:func:`atompaint._lazy.lazy_exports`.

``voxelize`` is not re-exported here: the subpackage :mod:`atompaint.voxelize` has the same name and
would replace the function as soon as it is imported; use ``from atompaint.voxelize import voxelize``.
"""

from atompaint._lazy import lazy_exports

_EXPORTS = {"load": "structures"}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
