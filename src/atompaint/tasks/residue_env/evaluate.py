"""Evaluating a trained amino-acid environment model on a held-out split, beside controls that
need no environment at all.

The model's predictions are scored (accuracy over examples, macro accuracy = mean of the
per-class accuracies over the classes present in the split, per-class accuracy, confusion
matrix, cross-entropy) next to:

- ``majority``: always the most frequent training class;
- ``prior``: a class drawn from the training class frequencies (its expected accuracy,
  ``sum_c p_train(c) p_split(c)``; its cross-entropy is that of the training frequencies, add-one
  smoothed);
- ``empty``: the same model shown an all-zero image (it can only answer with what its weights
  learnt of the class frequencies);
- ``shuffled_labels`` (when a checkpoint is given): the same model trained with
  ``data.shuffle_labels``, shown the real images.

The lift is the model's score minus a control's on the same examples; its standard error is that
of the paired per-example differences (accuracy) or of a bootstrap over examples (macro
accuracy).  Residues of one structure are not independent, so these errors are lower bounds;
seeds give the spread of training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from atompaint.tasks.residue_env.dataset import ResidueEnvDataset
from atompaint.tasks.residue_env.residues import AMINO_ACIDS

CONTROLS = ("majority", "prior", "empty", "shuffled_labels")
#: Bootstrap resamples of the macro-accuracy standard errors.
BOOTSTRAP = 400


@dataclass
class Score:
    """One predictor on one split: accuracy and macro accuracy with standard errors, and its mean
    cross-entropy (``None`` for a predictor that gives no probabilities)."""

    accuracy: float
    accuracy_se: float
    macro_accuracy: float
    macro_accuracy_se: float
    loss: float | None


@dataclass
class Lift:
    """The model's score minus a control's, on the same examples, with the standard error."""

    accuracy: float
    accuracy_se: float
    macro_accuracy: float
    macro_accuracy_se: float


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: ResidueEnvDataset, *, batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """``(logits (n, classes), labels (n,))`` of every item of ``dataset`` in order."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    logits, labels = [], []
    for batch in loader:
        logits.append(model(batch.image))
        labels.append(batch.label)
    return torch.cat(logits), torch.cat(labels)


def macro_accuracy(correct: np.ndarray, label: np.ndarray, num_classes: int = len(AMINO_ACIDS)) -> float:
    """Mean over the classes present in ``label`` of the mean of ``correct`` (0/1, or an expected
    correctness) among their examples."""
    n = np.bincount(label, minlength=num_classes)
    hits = np.bincount(label, weights=correct, minlength=num_classes)
    present = n > 0
    return float((hits[present] / n[present]).mean())


def _macro_bootstrap(correct: np.ndarray, label: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Macro accuracy of each bootstrap resample (rows of ``samples``, indices into the examples)."""
    return np.array([macro_accuracy(correct[s], label[s]) for s in samples])


def score(correct: np.ndarray, label: np.ndarray, samples: np.ndarray, loss: float | None) -> Score:
    """The :class:`Score` of per-example correctness ``correct`` (float ``(n,)``)."""
    n = len(correct)
    se = float(correct.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Score(float(correct.mean()), se, macro_accuracy(correct, label),
                 float(_macro_bootstrap(correct, label, samples).std(ddof=1)), loss)


def lift(model: np.ndarray, control: np.ndarray, label: np.ndarray, samples: np.ndarray) -> Lift:
    """The model's lift over a control from their per-example correctness on the same examples."""
    diff = model - control
    macro = _macro_bootstrap(model, label, samples) - _macro_bootstrap(control, label, samples)
    return Lift(float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))),
                macro_accuracy(model, label) - macro_accuracy(control, label), float(macro.std(ddof=1)))


def confusion_matrix(label: np.ndarray, pred: np.ndarray, num_classes: int = len(AMINO_ACIDS)) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: row = true class, column = predicted class."""
    return np.bincount(label * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def evaluate_predictions(
    logits: Tensor,
    label: Tensor,
    train_counts: np.ndarray,
    empty_logits: Tensor,
    *,
    shuffled_logits: Tensor | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores, lifts, per-class accuracies and the confusion matrix of a model's ``logits`` on
    examples of class ``label``, with the controls of the module docstring (``train_counts``: the
    training examples per class; ``empty_logits``: the model's ``(1, classes)`` answer to an empty
    image)."""
    y = label.numpy()
    n, k = len(y), logits.shape[1]
    if n < 2:
        raise ValueError("scoring needs at least two examples")
    samples = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))
    prior = (np.asarray(train_counts, dtype=np.float64) + 1) / (np.sum(train_counts) + k)
    pred = logits.argmax(dim=1).numpy()
    correct = {"model": (pred == y).astype(np.float64),
               "majority": (y == int(np.argmax(train_counts))).astype(np.float64),
               "prior": prior[y],
               "empty": (y == int(empty_logits.argmax())).astype(np.float64)}
    losses: dict[str, float | None] = {
        "model": float(F.cross_entropy(logits, label)),
        "majority": None,
        "prior": float(-np.log(prior[y]).mean()),
        "empty": float(F.cross_entropy(empty_logits.expand(n, -1), label)),
    }
    if shuffled_logits is not None:
        correct["shuffled_labels"] = (shuffled_logits.argmax(dim=1).numpy() == y).astype(np.float64)
        losses["shuffled_labels"] = float(F.cross_entropy(shuffled_logits, label))
    scores = {name: score(c, y, samples, losses[name]) for name, c in correct.items()}
    controls = [c for c in CONTROLS if c in correct]
    lifts = {c: lift(correct["model"], correct[c], y, samples) for c in controls}
    best = {"accuracy": max(controls, key=lambda c: scores[c].accuracy),
            "macro_accuracy": max(controls, key=lambda c: scores[c].macro_accuracy)}
    matrix = confusion_matrix(y, pred, k)
    support = matrix.sum(axis=1)
    return {
        "n": n,
        "scores": {name: asdict(s) for name, s in scores.items()},
        "lift": {c: asdict(v) for c, v in lifts.items()},
        "best_control": best,
        "lift_over_best": {
            "accuracy": {"control": best["accuracy"], "lift": lifts[best["accuracy"]].accuracy,
                         "se": lifts[best["accuracy"]].accuracy_se},
            "macro_accuracy": {"control": best["macro_accuracy"],
                               "lift": lifts[best["macro_accuracy"]].macro_accuracy,
                               "se": lifts[best["macro_accuracy"]].macro_accuracy_se},
        },
        "per_class": {name: {"n": int(support[i]),
                             "accuracy": float(matrix[i, i] / support[i]) if support[i] else None}
                      for i, name in enumerate(AMINO_ACIDS[:k])},
        "confusion": {"classes": list(AMINO_ACIDS[:k]), "rows": "true class", "columns": "predicted class",
                      "matrix": matrix.tolist()},
    }


def _load_task(checkpoint: str | os.PathLike[str]) -> Any:
    from atompaint.tasks.residue_env.module import ResidueEnvTask
    from atompaint.training.checkpoints import read_task_checkpoint

    read_task_checkpoint(checkpoint, "residue-env")
    return ResidueEnvTask.load_from_checkpoint(str(checkpoint), map_location="cpu")


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    *,
    split: str = "val",
    shuffled_checkpoint: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Load a residue-env checkpoint and score it on ``split`` (``val`` or ``test``) of its own data
    config (after ``overrides``, dotted config keys) with every control; ``shuffled_checkpoint``: a
    model of the same input trained with ``data.shuffle_labels``.  Returns plain data for JSON."""
    from atompaint.tasks.residue_env.datamodule import ResidueEnvDataModule
    from structlayers.configs import replace_fields

    task = _load_task(checkpoint)
    config = replace_fields(task.config, dict(overrides or {}), "config")
    # The real labels, whatever the model was trained on.
    datamodule = ResidueEnvDataModule(replace_fields(config.data, {"shuffle_labels": False}, "data"))
    dataset = datamodule.dataset(split)
    logits, label = predict(task.model, dataset, batch_size=batch_size)
    with torch.no_grad():
        empty = task.model(torch.zeros(1, *config.data.image.shape))
    shuffled = None
    if shuffled_checkpoint is not None:
        control = _load_task(shuffled_checkpoint)
        if (control.config.data.image, control.config.data.center) != (config.data.image, config.data.center):
            raise ValueError(f"{shuffled_checkpoint} images residues differently from {checkpoint} "
                             "(data.image or data.center differ)")
        shuffled, _ = predict(control.model, dataset, batch_size=batch_size)
    train_counts = np.array(list(datamodule.splits["train"].class_counts().values()))
    summary = datamodule.summary()
    return {
        "checkpoint": str(checkpoint),
        "shuffled_checkpoint": None if shuffled_checkpoint is None else str(shuffled_checkpoint),
        "name": config.name,
        "task": "residue-env",
        "split": split,
        "config": config.to_dict(),
        "data": {"counts": summary["counts"], "failed": summary["failed"],
                 "class_counts": {s: v["class_counts"] for s, v in summary["splits"].items()},
                 "structures": {s: v["structures"] for s, v in summary["splits"].items()}},
        **evaluate_predictions(logits, label, train_counts, empty, shuffled_logits=shuffled),
    }


def format_results(report: Mapping[str, Any]) -> str:
    """The scores and lifts of :func:`evaluate_checkpoint` as a text table."""
    from structlayers.utils.report import format_table

    def pm(value: float, se: float) -> str:
        return f"{value:.3f} +- {se:.3f}"

    rows = []
    for name, s in report["scores"].items():
        lift = report["lift"].get(name)
        rows.append([name, pm(s["accuracy"], s["accuracy_se"]), pm(s["macro_accuracy"], s["macro_accuracy_se"]),
                     "-" if s["loss"] is None else f"{s['loss']:.3f}",
                     "" if lift is None else pm(lift["accuracy"], lift["accuracy_se"]),
                     "" if lift is None else pm(lift["macro_accuracy"], lift["macro_accuracy_se"])])
    table = format_table(["predictor", "accuracy", "macro accuracy", "cross-entropy", "model lift (acc)",
                          "model lift (macro)"], rows, align="lrrrrr")
    best = [f"{metric.replace('_', ' ')} {pm(b['lift'], b['se'])} (vs {b['control']})"
            for metric, b in report["lift_over_best"].items()]
    return (f"{report['name']} ({report['checkpoint']}), {report['split']} split, n = {report['n']}\n{table}\n"
            f"lift over the best control: {', '.join(best)}")


def plot_confusion(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """The row-normalised confusion matrix of a report as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(report["confusion"]["matrix"], dtype=np.float64)
    classes = report["confusion"]["classes"]
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(rates, cmap="viridis", vmin=0, vmax=max(float(rates.max()), 1e-9))
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    s = report["scores"]["model"]
    ax.set_title(f"{report['name']}, {report['split']} (n = {report['n']}): accuracy {s['accuracy']:.3f}, "
                 f"macro {s['macro_accuracy']:.3f}", fontsize=8)
    fig.colorbar(im, ax=ax, label="share of the true class")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2)
