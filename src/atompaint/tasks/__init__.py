"""The tasks, one package each: its data (dataset, DataModule), its model, its LightningModule and
its training config.

- :mod:`atompaint.tasks.neighbor_loc`: the self-supervised neighbor-location task (in which
  direction does view B lie from view A?).
- :mod:`atompaint.tasks.lba`: ligand binding affinity regression on Atom3D LBA.
"""
