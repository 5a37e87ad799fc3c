"""Evaluating a trained neighbor-location model, with controls that show what it relies on.

A model that truly locates view B relative to view A must fail when either view carries no
information.  Each validation example is scored from one encoder pass over both views:

- ``real``: the example as made (the task's accuracy);
- ``a_empty`` / ``b_empty``: view A or view B replaced by an all-zero image;
- ``a_shuffled`` / ``b_shuffled``: view A or view B taken from another example of the set (a fixed
  derangement): a real-looking view that says nothing about this example's direction;
- the zero-parameter density rules of :mod:`~atompaint.tasks.neighbor_loc.controls` (A's centroid,
  B's centroid, their difference), which need no model at all.

Every score is masked like the model's logits (the directions the label could take, ``S``) and is
reported next to the construction's chance, the mean of ``1 / |S|``, with binomial standard errors.
The *lift* is the real accuracy minus the best control or rule: what the model gets from relating
the two views that no single view and no density rule gives.  Each result also records how the
examples were drawn and how many B views are empty or sparse (fewer than ``min_atoms`` atom centres
inside the cube).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from atompaint.tasks.neighbor_loc.controls import (
    RULES,
    binomial_se,
    chance_accuracy,
    chance_se,
    mask_logits,
    rule_hits,
)
from atompaint.tasks.neighbor_loc.dataset import NeighborLocDataConfig, NeighborLocDataset

#: The model's inputs: both views as made, then each view emptied or taken from another example.
VIEW_CONTROLS = ("real", "a_empty", "a_shuffled", "b_empty", "b_shuffled")


@dataclass
class ControlScore:
    """Accuracy of one predictor, its binomial standard error, and (for the model) the mean
    cross-entropy; ``z``: ``(accuracy - chance) / chance_se`` of the evaluation."""

    accuracy: float
    se: float
    loss: float | None = None
    z: float = 0.0


@dataclass(kw_only=True)
class EvalResult:
    """One validation set scored with every input of :data:`VIEW_CONTROLS` and every rule of
    :data:`~atompaint.tasks.neighbor_loc.controls.RULES`; related fields stand together.

    ``chance``: mean ``1 / |S|``; ``chance_se``: the standard error of a uniform guesser's accuracy
    around it; ``lift``: ``scores['real']`` minus the best of the other scores and the rules (named
    by ``best_control``), with ``lift_se`` from both standard errors; ``mask_sizes``: how many
    examples allowed each number of directions.
    """

    construction: str
    padding_A: float
    n: int
    mask_sizes: dict[int, int]
    chance: float
    chance_se: float
    scores: dict[str, ControlScore]
    rules: dict[str, ControlScore]
    best_control: str
    lift: float
    lift_se: float
    #: Share of the examples whose view B needed more than one draw.
    b_redrawn: float
    #: Share of the examples whose view B is a fallback: no draw passed the criterion, the densest was kept.
    b_fallback: float
    #: Shares of the examples whose view B holds no atom, and fewer than the criterion's minimum.
    b_empty: float
    b_sparse: float
    #: Accuracy (view B as made) on the examples whose B is empty, and on the others; ``None`` when
    #: a group has no example.
    accuracy_b_empty: float | None
    accuracy_b_not_empty: float | None
    #: Median atom counts of views A and B.
    a_atoms_median: float
    b_atoms_median: float


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


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A permutation of ``range(n)`` with no fixed point (for ``n >= 2``): a random cyclic shift."""
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    return (np.arange(n) + 1 + np.random.default_rng(seed).integers(n - 1)) % n


def score_rules(dataset: NeighborLocDataset, *, batch_size: int = 64) -> tuple[dict[str, np.ndarray], np.ndarray,
                                                                                 np.ndarray]:
    """Whether each density rule is right on each item of ``dataset`` (no model): ``({rule: bool (N,)},
    labels (N,), masks (N, K))``."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    right: dict[str, list[torch.Tensor]] = {name: [] for name in RULES}
    labels, masks = [], []
    for batch in loader:
        for name, hits in rule_hits(batch, dataset.directions).items():
            right[name].append(hits)
        labels.append(batch.label)
        masks.append(batch.mask)
    return ({name: torch.cat(v).numpy() for name, v in right.items()}, torch.cat(labels).numpy(),
            torch.cat(masks).numpy())


@torch.no_grad()
def evaluate_dataset(
    model: torch.nn.Module, dataset: NeighborLocDataset, *, batch_size: int = 64, seed: int = 0
) -> EvalResult:
    """Score ``model`` (a :class:`~atompaint.tasks.neighbor_loc.model.NeighborLocClassifier`) on every
    item of ``dataset`` with each input of :data:`VIEW_CONTROLS`, and the density rules."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    feats_a, feats_b, labels, draws, fallbacks, masks = [], [], [], [], [], []
    rule_right: dict[str, list[torch.Tensor]] = {name: [] for name in RULES}
    empty_feature = None
    for batch in loader:
        feats_a.append(model.encoder.fields(batch.view_a))
        feats_b.append(model.encoder.fields(batch.view_b))
        if empty_feature is None:
            empty_feature = model.encoder.fields(torch.zeros_like(batch.view_b[:1]))
        for name, hits in rule_hits(batch, dataset.directions).items():
            rule_right[name].append(hits)
        labels.append(batch.label)
        draws.append(batch.b_draws)
        fallbacks.append(batch.b_fallback)
        masks.append(batch.mask)
    fa, fb, label, mask = torch.cat(feats_a), torch.cat(feats_b), torch.cat(labels), torch.cat(masks)
    n = len(label)
    other = torch.as_tensor(derangement(n, seed), dtype=torch.long)
    empty = empty_feature.expand(n, -1)
    inputs = {"real": (fa, fb), "a_empty": (empty, fb), "a_shuffled": (fa[other], fb),
              "b_empty": (fa, empty), "b_shuffled": (fa, fb[other])}
    chance, null_se = chance_accuracy(mask), chance_se(mask)

    def score(right: np.ndarray, loss: float | None = None) -> ControlScore:
        accuracy = float(right.mean())
        return ControlScore(accuracy, binomial_se(accuracy, n), loss, (accuracy - chance) / null_se if null_se else 0.0)

    scores, correct = {}, {}
    for name, (a, b) in inputs.items():
        logits = mask_logits(model.head(torch.cat([a, b], dim=1)), mask)
        correct[name] = (logits.argmax(dim=1) == label).numpy()
        scores[name] = score(correct[name], float(F.cross_entropy(logits, label)))
    rules = {name: score(torch.cat(v).numpy()) for name, v in rule_right.items()}
    controls = {**{k: v for k, v in scores.items() if k != "real"}, **{f"rule_{k}": v for k, v in rules.items()}}
    best = max(controls, key=lambda k: controls[k].accuracy)
    atoms = np.array([view_atom_counts(dataset, k) for k in range(len(dataset))])
    min_atoms = dataset.criterion.min_atoms
    empty_b = atoms[:, 1] == 0

    def share(rows: np.ndarray) -> float | None:
        return float(correct["real"][rows].mean()) if rows.any() else None

    return EvalResult(
        padding_A=float(dataset.config.padding_A),
        n=n,
        chance=chance,
        scores=scores,
        b_redrawn=float((torch.cat(draws) > 1).float().mean()),
        b_fallback=float(torch.cat(fallbacks).float().mean()),
        b_empty=float(empty_b.mean()),
        b_sparse=float((atoms[:, 1] < min_atoms).mean()),
        a_atoms_median=float(np.median(atoms[:, 0])),
        b_atoms_median=float(np.median(atoms[:, 1])),
        accuracy_b_empty=share(empty_b),
        accuracy_b_not_empty=share(~empty_b),
        construction=dataset.config.construction,
        chance_se=null_se,
        rules=rules,
        lift=scores["real"].accuracy - controls[best].accuracy,
        lift_se=math.hypot(scores["real"].se, controls[best].se),
        best_control=best,
        mask_sizes={int(k): int(v) for k, v in sorted(Counter(mask.sum(dim=1).tolist()).items())},
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
    """The results of :func:`evaluate_checkpoint` as text: one table of accuracies (with standard
    errors) per padding, the model's inputs and the density rules beside chance and the lift."""
    from structlayers.utils.report import format_table

    blocks = [f"{report['name']} ({report['checkpoint']})"]
    for r in report["results"]:
        rows = [[name, f"{v['accuracy']:.3f}", f"{v['se']:.3f}", f"{v['z']:+.1f}"]
                for name, v in [*r["scores"].items(), *((f"rule {k}", v) for k, v in r["rules"].items())]]
        rows.append(["chance (mean 1/|S|)", f"{r['chance']:.3f}", f"{r['chance_se']:.3f}", ""])
        rows.append([f"lift over {r['best_control']}", f"{r['lift']:+.3f}", f"{r['lift_se']:.3f}", ""])
        blocks.append(
            f"\n{r['construction']}, padding {r['padding_A']:g} A, n = {r['n']}, |S| counts {r['mask_sizes']}; "
            f"B empty {r['b_empty']:.3f}, sparse {r['b_sparse']:.3f}, redrawn {r['b_redrawn']:.3f}, "
            f"fallback {r['b_fallback']:.3f}\n"
            + format_table(["predictor", "accuracy", "s.e.", "z vs chance"], rows, align="lrrr")
        )
    return "\n".join(blocks)


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2)
