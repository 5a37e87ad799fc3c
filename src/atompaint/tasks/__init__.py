"""The tasks, one package each: its data (dataset, DataModule), its model, its LightningModule and
its training config.

- :mod:`atompaint.tasks.neighbor_loc`: the self-supervised neighbor-location task (in which
  direction does view B lie from view A?).
- :mod:`atompaint.tasks.lba`: ligand binding affinity regression on Atom3D LBA.
- :mod:`atompaint.tasks.residue_env`: the amino-acid environment task (which residue sits at the
  centre of an image of its surroundings, its own atoms removed).
- :mod:`atompaint.tasks.common`: what the tasks share (per-item generators, the structure cache, the
  epoch sampler, the loader side of data configs and DataModules, the encoder-plus-head classifier).

A task's ``config`` module defines its run config, a :class:`atompaint.training.config.RunConfig`
with the task's ``data`` section and the ``build_datamodule`` / ``build_module`` it trains with;
:data:`TASKS` names it, for ``atompaint train <task>`` and the YAML key ``task``.
"""

#: The run config class of each task, as ``module:class`` (imported on first use).
TASKS: dict[str, str] = {
    "neighbor-loc": "atompaint.tasks.neighbor_loc.config:NeighborLocRunConfig",
    "lba": "atompaint.tasks.lba.config:LBARunConfig",
    "residue-env": "atompaint.tasks.residue_env.config:ResidueEnvRunConfig",
}
