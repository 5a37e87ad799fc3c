"""Tables and plots of the task-accuracy study from its results files (nothing is recomputed).

Reads ``results/<task>/<regime>/<run>.{summary,eval}.json`` (written by run.py) and
``results/step_time.json`` (step_time.py) and writes ``results/table.md`` (the README's tables),
``results/summary.json`` (every number of the tables) and ``results/accuracy_vs_cost.png``.

    .venv/bin/python experiments/task_accuracy/summarize.py

Per run: the held-out accuracy, the controls, the best control and the lift over it (with the
evaluation's standard errors).  Per variant: the mean over seeds +- the standard error of the mean
over seeds (sample std / sqrt(n)); a single-seed cell has no spread and says so (n = 1).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import DENSE, RESULTS, SEEDS, TASKS, VARIANTS

REGIMES = {"epochs": "equal epochs", "wallclock": "equal wall-clock", "matched": "compute-matched (wider encoder)"}
RESIDUE_CONTROLS = ("majority", "prior", "empty", "shuffled_labels")
NEIGHBOR_CONTROLS = ("a_empty", "a_shuffled", "b_empty", "b_shuffled", "a_centroid", "b_centroid",
                     "a_minus_b_centroid")
LABELS = {
    "dense-enc": "dense escnn",
    "field-enc": "separable per-field, ACDC x2",
    "irrep-enc": "separable irrep-wise, ACDC x2",
}


def mean_se(values: list[float]) -> tuple[float, float | None]:
    if not values:
        return math.nan, None
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def fmt(mean: float, se: float | None, digits: int = 3) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f} +- {se:.{digits}f}" if se is not None else f"{mean:.{digits}f} (n=1)"


def describe(variant: str) -> tuple[str, str]:
    enc, _, head = variant.partition("_")
    width = ""
    if "-w" in enc:
        enc, _, w = enc.partition("-w")
        width = f", max_channels {w}"
        enc += "-enc"
    return LABELS.get(enc, enc) + width, {"dense-head": "dense", "acdc-head": "ACDC x12"}.get(head, head)


def run_rows(task: str, regime: str) -> list[dict]:
    folder = RESULTS / task / regime
    rows = []
    for path in sorted(folder.glob("*.eval.json")):
        run = path.name[: -len(".eval.json")]
        variant, _, seed = run.rpartition("_s")
        evaluation = json.loads(path.read_text())
        summary = json.loads((folder / f"{run}.summary.json").read_text())
        row = {"run": run, "variant": variant, "seed": int(seed), "steps": summary.get("global_step"),
               "epochs": summary.get("epochs"), "train_seconds": summary.get("seconds"),
               "checkpoint": evaluation.get("checkpoint")}
        if task == "residue-env":
            scores = evaluation["scores"]
            row.update(n=evaluation["n"], accuracy=scores["model"]["accuracy"],
                       accuracy_se=scores["model"]["accuracy_se"],
                       macro=scores["model"]["macro_accuracy"], loss=scores["model"]["loss"],
                       controls={k: scores[k]["accuracy"] for k in RESIDUE_CONTROLS if k in scores},
                       best_control=evaluation["lift_over_best"]["accuracy"]["control"],
                       lift=evaluation["lift_over_best"]["accuracy"]["lift"],
                       lift_se=evaluation["lift_over_best"]["accuracy"]["se"],
                       macro_lift=evaluation["lift_over_best"]["macro_accuracy"]["lift"])
        else:
            result = evaluation["results"][0]
            scores = result["scores"]
            row.update(n=result["n"], accuracy=scores["real"]["accuracy"], accuracy_se=scores["real"]["se"],
                       loss=scores["real"].get("loss"), chance=result["chance"],
                       controls={k: scores[k]["accuracy"] for k in NEIGHBOR_CONTROLS if k in scores},
                       best_control=result["best_control"], lift=result["lift"], lift_se=result["lift_se"])
        rows.append(row)
    return rows


def aggregate(task: str, regime: str, rows: list[dict], timing: dict | None) -> list[dict]:
    out = []
    names = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    names += sorted({r["variant"] for r in rows} - set(names))
    for variant in names:
        mine = [r for r in rows if r["variant"] == variant]
        cell = {"variant": variant, "seeds": sorted(r["seed"] for r in mine), "n_eval": mine[0]["n"]}
        for key in ("accuracy", "lift", "macro", "macro_lift", "chance"):
            if key in mine[0]:
                cell[key], cell[key + "_se_seeds"] = mean_se([r[key] for r in mine])
        cell["accuracy_se_eval_mean"] = statistics.fmean(r["accuracy_se"] for r in mine)
        cell["controls"] = {k: statistics.fmean(r["controls"][k] for r in mine) for k in mine[0]["controls"]}
        cell["best_controls"] = sorted({r["best_control"] for r in mine})
        cell["steps"] = sorted({r["steps"] for r in mine})
        cell["train_seconds"] = statistics.fmean(r["train_seconds"] for r in mine)
        if timing and task in timing["tasks"] and variant in timing["tasks"][task]["variants"]:
            t = timing["tasks"][task]["variants"][variant]
            cell.update(encoder_flops=t["encoder_flops"], encoder_params=t["encoder_params"], params=t["params"],
                        ms_model_step=t["ms_model_step"], ms_step_with_data=t["ms_step_with_data"])
        out.append(cell)
    return out


def table(task: str, regime: str, cells: list[dict]) -> list[str]:
    if not cells:
        return [f"_No finished runs for {task}, {REGIMES[regime]}._", ""]
    lines = []
    if task == "residue-env":
        lines += ["| encoder | head | seeds | steps | test accuracy | macro accuracy | best control (mean acc.) | "
                  "lift over best control | encoder MFLOPs / image | model step ms | step + data ms |",
                  "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    else:
        lines += ["| encoder | head | seeds | steps | accuracy (masked) | chance | best control (mean acc.) | "
                  "lift over best control | encoder MFLOPs / image | model step ms | step + data ms |",
                  "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for c in cells:
        enc, head = describe(c["variant"])
        best = " / ".join(f"{b} {c['controls'][b]:.3f}" for b in c["best_controls"])
        flops = f"{c['encoder_flops'] / 1e6:.1f}" if "encoder_flops" in c else "-"
        step = f"{c['ms_model_step']:.1f}" if "ms_model_step" in c else "-"
        both = f"{c['ms_step_with_data']:.1f}" if "ms_step_with_data" in c else "-"
        steps = "/".join(str(s) for s in c["steps"])
        middle = (fmt(c["macro"], c["macro_se_seeds"]) if task == "residue-env" else f"{c['chance']:.3f}")
        lines.append(f"| {enc} | {head} | {len(c['seeds'])} | {steps} | {fmt(c['accuracy'], c['accuracy_se_seeds'])} | "
                     f"{middle} | {best} | {fmt(c['lift'], c['lift_se_seeds'])} | {flops} | {step} | {both} |")
    lines.append("")
    return lines


def controls_table(task: str, cells: list[dict]) -> list[str]:
    if not cells:
        return []
    keys = list(cells[0]["controls"])
    lines = [f"| encoder | head | model | {' | '.join(keys)} |", "|---|---|---:|" + "---:|" * len(keys)]
    for c in cells:
        enc, head = describe(c["variant"])
        lines.append(f"| {enc} | {head} | {c['accuracy']:.3f} | "
                     + " | ".join(f"{c['controls'][k]:.3f}" for k in keys) + " |")
    lines.append("")
    return lines


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in results if results[t].get("epochs")]
    if not tasks:
        return
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    markers = {"epochs": "o", "wallclock": "s", "matched": "^"}
    for i, task in enumerate(tasks):
        for j, (key, label) in enumerate((("encoder_flops", "encoder FLOPs per image"),
                                          ("ms_step_with_data", "measured training step (model + data), ms"))):
            ax = axes[i][j]
            for regime, cells in results[task].items():
                for c in cells:
                    if key not in c:
                        continue
                    x = c[key] / (1e6 if key == "encoder_flops" else 1)
                    color = {"dense": "C0", "field": "C1", "irrep": "C2"}[c["variant"].split("-")[0]]
                    face = color if "dense-head" in c["variant"] else "white"
                    ax.errorbar(x, c["accuracy"], yerr=c["accuracy_se_seeds"] or 0, fmt=markers[regime], color=color,
                                mfc=face, capsize=3, label=f"{c['variant']} ({regime})")
            best = max((max(c["controls"].values()) for c in results[task]["epochs"]), default=None)
            if best is not None:
                ax.axhline(best, color="grey", ls="--", lw=1, label="best control (max over runs' means)")
            ax.set_xlabel(label + (" (M)" if key == "encoder_flops" else ""))
            ax.set_ylabel(f"{task} held-out accuracy")
            ax.set_title(f"{task}: accuracy (mean +- SE over seeds) vs {label.split(',')[0]}", fontsize=9)
            if i == 0 and j == 1:
                ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    timing_path = RESULTS / "step_time.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else None
    results: dict = {}
    runs: dict = {}
    md = ["<!-- generated by experiments/task_accuracy/summarize.py from results/; do not edit -->", ""]
    for task in TASKS:
        results[task], runs[task] = {}, {}
        for regime, title in REGIMES.items():
            rows = run_rows(task, regime)
            if not rows and regime != "epochs":
                continue
            cells = aggregate(task, regime, rows, timing)
            results[task][regime], runs[task][regime] = cells, rows
            md += [f"### {task}: {title}", ""] + table(task, regime, cells)
            if regime == "epochs" and cells:
                md += [f"Controls of {task}, {title} (mean over seeds of each control's held-out accuracy):", ""]
                md += controls_table(task, cells)
        dense = next((c for c in results[task].get("epochs", []) if c["variant"] == DENSE), None)
        if dense:
            md += [f"Differences from the dense-encoder, dense-head variant ({task}, equal epochs, per seed "
                   "paired by seed, mean +- SE over seeds):", "",
                   "| variant | regime | accuracy - dense |", "|---|---|---:|"]
            base = {r["seed"]: r["accuracy"] for r in runs[task]["epochs"] if r["variant"] == DENSE}
            for regime, rows in runs[task].items():
                for variant in dict.fromkeys(r["variant"] for r in rows):
                    if variant == DENSE and regime == "epochs":
                        continue
                    diffs = [r["accuracy"] - base[r["seed"]] for r in rows
                             if r["variant"] == variant and r["seed"] in base]
                    if diffs:
                        md.append(f"| {variant} | {regime} | {fmt(*mean_se(diffs))} (n={len(diffs)}) |")
            md.append("")
    (RESULTS / "table.md").write_text("\n".join(md) + "\n")
    (RESULTS / "summary.json").write_text(json.dumps({"seeds_planned": list(SEEDS), "variants": results, "runs": runs},
                                                     indent=2) + "\n")
    plot(results, RESULTS / "accuracy_vs_cost.png")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
