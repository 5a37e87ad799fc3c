"""Evaluating a trained neighbor-location model, with controls that show what it relies on.

A model that truly locates view B relative to view A must fail when B carries no information.  Each
validation example is scored three ways from one encoder pass over both views:

- ``real``: the example as made (the task's accuracy);
- ``empty``: view B replaced by an all-zero image -- near chance if the model needs B's content;
- ``shuffled``: view B taken from another example of the set (a fixed derangement) -- a real-looking
  B that says nothing about this example's direction.

The label is uniform over the directions, but it is not independent of view A: B must land on
dense structure, and A shows where the structure is.  Accuracy above chance in the controls measures
how much of that the model reads from A alone.  Each result also records how the B views were drawn
and how many are empty or sparse (fewer than ``min_atoms`` atom centres inside the cube).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from atompaint.tasks.neighbor_loc.dataset import NeighborLocDataConfig, NeighborLocDataset

VIEW_B_CONTROLS = ("real", "empty", "shuffled")


@dataclass
class ControlScore:
    """Accuracy and mean cross-entropy of one way of presenting view B."""

    accuracy: float
    loss: float


@dataclass
class EvalResult:
    """One validation set scored with every control of :data:`VIEW_B_CONTROLS`."""

    padding_A: float
    n: int
    chance: float
    scores: dict[str, ControlScore]
    b_redrawn: float
    b_fallback: float
    b_empty: float
    b_sparse: float
    a_atoms_median: float
    b_atoms_median: float
    #: Accuracy (view B as made) on the examples whose B is empty, and on the others; ``None`` when
    #: a group has no example.
    accuracy_b_empty: float | None = None
    accuracy_b_not_empty: float | None = None


def view_atom_counts(dataset: NeighborLocDataset, key: int) -> tuple[int, int]:
    """Imaged atoms whose centres lie inside view A's and view B's cube for item ``key``."""
    ex = dataset.example(key)
    prepared = dataset.structure(ex.structure_id)
    half = dataset.config.image.length_A / 2
    counts = []
    for center, rotation in ((ex.views.center_a, ex.views.rotation_a), (ex.views.center_b, ex.views.rotation_b)):
        rows = prepared.candidates(center)
        rel = (prepared.coords[rows] - center) @ np.asarray(rotation).T
        counts.append(int(np.all(np.abs(rel) <= half, axis=1).sum()))
    return counts[0], counts[1]


@torch.no_grad()
def evaluate_dataset(
    model: torch.nn.Module, dataset: NeighborLocDataset, *, batch_size: int = 64, seed: int = 0
) -> EvalResult:
    """Score ``model`` (a :class:`~atompaint.tasks.neighbor_loc.model.NeighborLocClassifier`) on every
    item of ``dataset`` with each view-B control."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    feats_a, feats_b, labels, draws, fallbacks = [], [], [], [], []
    empty_feature = None
    for batch in loader:
        feats_a.append(model.encoder.fields(batch.view_a))
        feats_b.append(model.encoder.fields(batch.view_b))
        if empty_feature is None:
            empty_feature = model.encoder.fields(torch.zeros_like(batch.view_b[:1]))
        labels.append(batch.label)
        draws.append(batch.b_draws)
        fallbacks.append(batch.b_fallback)
    fa, fb, label = torch.cat(feats_a), torch.cat(feats_b), torch.cat(labels)
    n = len(label)
    derangement = (np.arange(n) + 1 + np.random.default_rng(seed).integers(n - 1)) % n if n > 1 else np.zeros(1)
    inputs = {
        "real": fb,
        "empty": empty_feature.expand(n, -1),
        "shuffled": fb[torch.as_tensor(derangement, dtype=torch.long)],
    }
    scores, correct = {}, {}
    for name, b in inputs.items():
        logits = model.head(torch.cat([fa, b], dim=1))
        correct[name] = (logits.argmax(dim=1) == label).numpy()
        scores[name] = ControlScore(accuracy=float(correct[name].mean()), loss=float(F.cross_entropy(logits, label)))
    atoms = np.array([view_atom_counts(dataset, k) for k in range(len(dataset))])
    min_atoms = dataset.criterion.min_atoms
    empty = atoms[:, 1] == 0

    def share(mask: np.ndarray) -> float | None:
        return float(correct["real"][mask].mean()) if mask.any() else None

    return EvalResult(
        padding_A=float(dataset.config.padding_A),
        n=n,
        chance=1.0 / len(dataset.directions),
        scores=scores,
        b_redrawn=float((torch.cat(draws) > 1).float().mean()),
        b_fallback=float(torch.cat(fallbacks).float().mean()),
        b_empty=float((atoms[:, 1] == 0).mean()),
        b_sparse=float((atoms[:, 1] < min_atoms).mean()),
        a_atoms_median=float(np.median(atoms[:, 0])),
        b_atoms_median=float(np.median(atoms[:, 1])),
        accuracy_b_empty=share(empty),
        accuracy_b_not_empty=share(~empty),
    )


def validation_dataset(data: NeighborLocDataConfig) -> NeighborLocDataset:
    """The validation set of a training run's ``data`` config (the structures held out by name)."""
    from atompaint.tasks.neighbor_loc.datamodule import NeighborLocDataModule

    datamodule = NeighborLocDataModule(data)
    datamodule.setup("validate")
    if datamodule.val_dataset is None:
        raise ValueError("the data config holds out no validation structures (val_fraction=0 or one structure)")
    return datamodule.val_dataset


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    *,
    paddings_A: Sequence[float] | None = None,
    overrides: Mapping[str, Any] | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Load a neighbor-loc checkpoint and score its validation set, once per padding in
    ``paddings_A`` (default: the padding it was trained with).  ``overrides`` are dotted config
    keys (``data.val_size``, ...) applied first.  Returns plain data for JSON."""
    from atompaint.tasks.neighbor_loc.module import NeighborLocTask
    from structlayers.configs import replace_fields

    task = NeighborLocTask.load_from_checkpoint(str(checkpoint), map_location="cpu")
    config = replace_fields(task.config, dict(overrides or {}), "config")
    paddings = [config.data.padding_A] if not paddings_A else [float(p) for p in paddings_A]
    results = []
    for padding in paddings:
        data = replace_fields(config.data, {"padding_A": padding}, "data")
        results.append(evaluate_dataset(task.model, validation_dataset(data), batch_size=batch_size))
    return {
        "checkpoint": str(checkpoint),
        "name": config.name,
        "config": config.to_dict(),
        "results": [asdict(r) for r in results],
    }


def format_results(report: Mapping[str, Any]) -> str:
    """The results of :func:`evaluate_checkpoint` as a text table."""
    from structlayers.report import format_table

    rows = []
    for r in report["results"]:
        rows.append([
            f"{r['padding_A']:g}", r["n"], *(f"{r['scores'][c]['accuracy']:.3f}" for c in VIEW_B_CONTROLS),
            f"{r['chance']:.3f}", f"{r['b_empty']:.3f}", f"{r['b_sparse']:.3f}", f"{r['b_redrawn']:.3f}",
            f"{r['b_fallback']:.3f}",
        ])
    headers = ["padding A", "n", *(f"acc ({c} B)" for c in VIEW_B_CONTROLS), "chance", "B empty", "B sparse",
               "B redrawn", "B fallback"]
    return f"{report['name']} ({report['checkpoint']})\n" + format_table(headers, rows, align="r" * len(headers))


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2)
