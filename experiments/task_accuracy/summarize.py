"""Tables and plots of the task-accuracy study from its results files (nothing is recomputed).

Reads ``results/<task>/<regime>/<run>.{summary,eval}.json`` (written by run.py) and the step-time
runs ``results/step_time.json`` and ``SEPARATE_TIMINGS`` (step_time.py) and writes
``results/table.md`` (the README's tables), ``results/summary.json`` (every number of the tables)
and ``results/accuracy_vs_cost.png``, and copies ``table.md`` verbatim into README.md between its
``table:start`` / ``table:end`` markers.

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

REGIMES = {"epochs": "equal epochs", "wallclock": "equal wall-clock",
           "matched": "compute-matched (wider encoder, at least the dense encoder's FLOPs, equal epochs)",
           "long": "longer training (8 epochs, dense head)"}
#: Regimes whose runs are compared, seed by seed, with a dense-encoder run of their own regime
#: rather than with the equal-epochs one (same budget).
OWN_BASELINE = ("long",)
RESIDUE_CONTROLS = ("majority", "prior", "empty", "shuffled_labels")
NEIGHBOR_CONTROLS = ("a_empty", "a_shuffled", "b_empty", "b_shuffled", "a_centroid", "b_centroid",
                     "a_minus_b_centroid")
LABELS = {
    "dense-enc": "dense escnn",
    "field-enc": "separable per-field, ACDC x2",
    "irrep-enc": "separable irrep-wise, ACDC x2",
    "grid-enc": "grid-domain (24 rotations), dense mixing",
    "irrepdense-enc": "separable irrep-wise, dense mixing",
    "fielddense-enc": "separable per-field, dense mixing",
    "gridwide-enc": "grid-domain (24 rotations), dense mixing, channels x5.5",
}
COLORS = {"dense": "C0", "field": "C1", "irrep": "C2", "grid": "C3", "irrepdense": "C4", "fielddense": "C5",
          "gridwide": "C6"}
#: Step-time runs other than ``step_time.json``, each interleaved with its own dense variant, and the
#: mark their rows carry in the tables: the compute-matched (width 3) encoders, the encoders
#: added for issue 20 item 5, and the 5.5x-wider grid encoder.
SEPARATE_TIMINGS = {"step_time_matched.json": "b", "step_time_more.json": "c", "step_time_gridwide.json": "d"}


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
        width = f", width {w}"
        enc += "-enc"
    return LABELS.get(enc, enc) + width, {"dense-head": "dense", "acdc-head": "ACDC x12"}.get(head, head)


def _best_is_last(summary: dict, checkpoint: str) -> bool:
    """Whether the scored checkpoint is from the last epoch (the run was still improving)."""
    if checkpoint.endswith("last.ckpt"):
        return True
    step = checkpoint.rpartition("step=")[2].partition(".ckpt")[0]
    return step.isdigit() and int(step) == summary.get("global_step")


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
               "checkpoint": evaluation.get("checkpoint"),
               "best_is_last": _best_is_last(summary, evaluation.get("checkpoint", ""))}
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
                       controls={**{k: scores[k]["accuracy"] for k in NEIGHBOR_CONTROLS if k in scores},
                                 **{f"rule_{k}": v["accuracy"] for k, v in result.get("rules", {}).items()}},
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
        cell["best_is_last"] = f"{sum(r['best_is_last'] for r in mine)}/{len(mine)}"
        if timing and task in timing["tasks"] and variant in timing["tasks"][task]["variants"]:
            t = timing["tasks"][task]["variants"][variant]
            cell.update(encoder_flops=t["encoder_flops"], encoder_params=t["encoder_params"], params=t["params"],
                        ms_model_step=t["ms_model_step"], ms_step_with_data=t["ms_step_with_data"],
                        step_source=t.get("source"))
        out.append(cell)
    return out


def table(task: str, regime: str, cells: list[dict]) -> list[str]:
    if not cells:
        return [f"_No finished runs for {task}, {REGIMES[regime]}._", ""]
    lines = []
    if task == "residue-env":
        lines += ["| encoder | head | seeds | steps | test accuracy | macro accuracy | best control (mean acc.) | "
                  "lift over best control | encoder MFLOPs / image | model step ms | step + data ms | train s (mean) | "
                  "best epoch = last |",
                  "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    else:
        lines += ["| encoder | head | seeds | steps | accuracy (masked) | chance | best control (mean acc.) | "
                  "lift over best control | encoder MFLOPs / image | model step ms | step + data ms | train s (mean) | "
                  "best epoch = last |",
                  "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for c in cells:
        enc, head = describe(c["variant"])
        best = " / ".join(f"{b} {c['controls'][b]:.3f}" for b in c["best_controls"])
        flops = f"{c['encoder_flops'] / 1e6:.1f}" if "encoder_flops" in c else "-"
        mark = f" ({SEPARATE_TIMINGS[c['step_source']]})" if c.get("step_source") else ""
        step = f"{c['ms_model_step']:.1f}{mark}" if "ms_model_step" in c else "-"
        both = f"{c['ms_step_with_data']:.1f}{mark}" if "ms_step_with_data" in c else "-"
        steps = "/".join(str(s) for s in c["steps"])
        middle = (fmt(c["macro"], c["macro_se_seeds"]) if task == "residue-env" else f"{c['chance']:.3f}")
        lines.append(f"| {enc} | {head} | {len(c['seeds'])} | {steps} | {fmt(c['accuracy'], c['accuracy_se_seeds'])} | "
                     f"{middle} | {best} | {fmt(c['lift'], c['lift_se_seeds'])} | {flops} | {step} | {both} | "
                     f"{c['train_seconds']:.0f} | {c['best_is_last']} |")
    lines.append("")
    for source in dict.fromkeys(c["step_source"] for c in cells if c.get("step_source")):
        lines += [f"({SEPARATE_TIMINGS[source]}) measured in results/{source}, a separate interleaved run: compare "
                  "with that run's dense step (step-time table, last column), not with the other rows.", ""]
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
    fig, axes = plt.subplots(len(tasks), 2, figsize=(14, 4.2 * len(tasks)), squeeze=False)
    markers = {"epochs": "o", "wallclock": "s", "matched": "^", "long": "D"}
    for i, task in enumerate(tasks):
        for j, (key, label) in enumerate((("encoder_flops", "encoder FLOPs per image"),
                                          ("ms_step_with_data", "measured training step (model + data), ms"))):
            ax = axes[i][j]
            for regime, cells in results[task].items():
                for c in cells:
                    # Step times of another measurement run are not on this axis.
                    if key not in c or key == "ms_step_with_data" and c.get("step_source"):
                        continue
                    x = c[key] / (1e6 if key == "encoder_flops" else 1)
                    color = COLORS[c["variant"].split("-")[0]]
                    face = color if "dense-head" in c["variant"] else "white"
                    ax.errorbar(x, c["accuracy"], yerr=c["accuracy_se_seeds"] or 0, fmt=markers[regime], color=color,
                                mfc=face, capsize=3, label=f"{c['variant']} ({regime})")
            best = max((max(c["controls"].values()) for c in results[task]["epochs"]), default=None)
            if best is not None:
                ax.axhline(best, color="grey", ls="--", lw=1, label="best control (max over runs' means)")
            ax.set_xlabel(label + (" (M)" if key == "encoder_flops" else
                                   " (other runs' timings not shown)"))
            ax.set_ylabel(f"{task} held-out accuracy")
            ax.set_title(f"{task}: mean +- SE over seeds; filled: dense head, open: ACDC head", fontsize=9)
    # One legend beside the panels, from the FLOPs axis (it shows every variant).
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=7, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.savefig(path, dpi=120)


def step_table(timing: dict | None) -> list[str]:
    if not timing:
        return []
    lines = ["### Measured step times and encoder cost (results/step_time.json)", "",
             f"One interleaved run, {timing['repeats']} repeats after a warm-up, OMP_NUM_THREADS="
             f"{timing['omp_num_threads']}, load average {timing['load_average_before'][0]:.2f} before and "
             f"{timing['load_average_after'][0]:.2f} after (1-minute); data = the training loader's time per batch "
             "(the same for every variant).", "",
             "Rows of another run (column `run`: the `width 3` compute-matched encoders, the grid-domain (also 5.5x "
             "wider) and dense-mixing encoders) come from separate interleaved runs, each with its own dense variant "
             "and load ("
             + "; ".join(f"{source}: load average {load}" for source, load in timing["separate_loads"].items())
             + "); compare them through their model step relative to that run's dense step (last column).", "",
             "| task | variant | run | encoder MFLOPs / image | encoder params | model params | model step ms | "
             "data ms | step + data ms | batches at equal wall-clock (x dense) | model step / dense step, same run |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for task, t in timing["tasks"].items():
        dense = t["variants"][DENSE]["ms_model_step"]
        for name, row in t["variants"].items():
            ratio = row.get("ms_model_step_vs_dense", round(row["ms_model_step"] / dense, 3))
            data = row.get("ms_data_per_batch", t["ms_data_per_batch"])
            lines.append(f"| {task} | {name} | {row.get('source', 'step_time.json')} | "
                         f"{row['encoder_flops'] / 1e6:.2f} | {row['encoder_params']:,} | "
                         f"{row['params']:,} | {row['ms_model_step']:.1f} | {data:.1f} | "
                         f"{row['ms_step_with_data']:.1f} | {row['wallclock_ratio_vs_dense']:.3f} | {ratio:.2f} |")
    lines.append("")
    return lines


def construction_table() -> list[str]:
    path = RESULTS.parents[1] / "neighbor_loc" / "results" / "construction_stats.json"
    if not path.exists():
        return []
    stats = json.loads(path.read_text())
    lines = ["### Neighbour constructions on the 52 chains (experiments/neighbor_loc/results/construction_stats.json)",
             "", "Held-out structures, n pairs, zero-parameter density rules against the construction's chance "
             "(mean 1/|S|), +- binomial SE; accepted share of 20,000 (origin, orientation) draws.", "",
             "| construction | n | chance | A centroid | B centroid | A - B centroid | all rules within 2 SE | "
             "accepted share of draws |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    share = stats["draw_statistics"]["non_loi_dropped"]["accepted_share"]
    for name, c in stats["constructions"].items():
        held = c["held_out"]
        if not held.get("constructed"):
            lines.append(f"| {name} | - | - | - | - | - | not constructible: {held['error'][:110]}... | "
                         f"{share.get(name, 1.0):.5f} |")
            continue
        r = held["rules"]
        lines.append(f"| {name} | {held['n']} | {held['chance']:.3f} | "
                     + " | ".join(f"{r[k]['accuracy']:.3f} +- {r[k]['se']:.3f}"
                                  for k in ("a_centroid", "b_centroid", "a_minus_b_centroid"))
                     + f" | {held['all_rules_within_2se']} | {share.get(name, 1.0):.5f} |")
    lines.append("")
    return lines


def part5() -> list[str]:
    """Time a seed-004-shaped run would take, from measured training steps (bench.py's committed
    seed-004 benches, batch of 4 view pairs; and part5_estimate.py's, if run), scaled linearly to
    the config's batch of 32 and its 313 batches per epoch (train_size 10,000)."""
    lines = ["### Part 5: seed-004-shaped model, irrep-wise encoder (cost estimate only)", "",
             "| source | variant | measured step, s (batch of pairs) | est. step at batch 32, s | "
             "est. hours per epoch (313 batches) | est. days for the config's 100 epochs |",
             "|---|---|---:|---:|---:|---:|"]
    per_epoch = -(-10000 // 32)
    root = RESULTS.parents[1] / "compressed_encoders" / "results"
    for name in ("bench_seed004.json", "bench_seed004_repeat.json"):
        path = root / name
        if not path.exists():
            continue
        bench = json.loads(path.read_text())
        for variant in ("dense", "separable (irrep-wise depthwise) + acdc x2 + CG"):
            row = bench["variants"].get(variant)
            if row is None:
                continue
            step = row["step_seconds_median"] * 32 / bench["batch"]
            lines.append(f"| experiments/compressed_encoders/results/{name} | {variant} | "
                         f"{row['step_seconds_median']:.2f} ({bench['batch']}) | {step:.1f} | "
                         f"{step * per_epoch / 3600:.1f} | {step * per_epoch * 100 / 86400:.1f} |")
    own = RESULTS / "part5_estimate.json"
    if own.exists():
        est = json.loads(own.read_text())
        e = est["estimate"]
        lines.append(f"| results/part5_estimate.json | irrep-wise + acdc x2 + CG | {est['step_seconds_median']:.2f} "
                     f"({est['measured_batch_pairs']}) | {e['step_seconds']:.1f} | {e['epoch_hours']:.1f} | "
                     f"{e['config_run_days']:.1f} |")
    lines.append("")
    return lines


def load_timing() -> dict | None:
    """``step_time.json``, with the variants it lacks added from the runs of ``SEPARATE_TIMINGS``;
    their rows carry ``ms_model_step_vs_dense``, the ratio to the dense step of their own run, since
    absolute times of two runs under different load do not compare."""
    path = RESULTS / "step_time.json"
    if not path.exists():
        return None
    timing = json.loads(path.read_text())
    timing["separate_loads"] = {}
    for source in SEPARATE_TIMINGS:
        if not (RESULTS / source).exists():
            continue
        other = json.loads((RESULTS / source).read_text())
        timing["separate_loads"][source] = (f"{other['load_average_before'][0]:.2f} before, "
                                            f"{other['load_average_after'][0]:.2f} after")
        for task, t in other["tasks"].items():
            dense = t["variants"][DENSE]["ms_model_step"]
            for name, row in t["variants"].items():
                if name not in timing["tasks"][task]["variants"]:
                    timing["tasks"][task]["variants"][name] = {
                        **row, "ms_model_step_vs_dense": round(row["ms_model_step"] / dense, 3),
                        "ms_data_per_batch": t["ms_data_per_batch"], "source": source}
    return timing


def main() -> int:
    timing = load_timing()
    results: dict = {}
    runs: dict = {}
    md = ["<!-- generated by experiments/task_accuracy/summarize.py from results/; do not edit -->", ""]
    md += construction_table() + step_table(timing)
    for task in TASKS:
        results[task], runs[task] = {}, {}
        for regime, title in REGIMES.items():
            rows = run_rows(task, regime)
            if not rows and regime != "epochs":
                continue
            cells = aggregate(task, regime, rows, timing)
            results[task][regime], runs[task][regime] = cells, rows
            md += [f"### {task}: {title}", ""] + table(task, regime, cells)
            if regime in ("epochs", *OWN_BASELINE) and cells:
                md += [f"Controls of {task}, {title} (mean over seeds of each control's held-out accuracy):", ""]
                md += controls_table(task, cells)
        dense = next((c for c in results[task].get("epochs", []) if c["variant"] == DENSE), None)
        if dense:
            md += [f"Differences from the dense-encoder, dense-head variant ({task}; paired by seed with the "
                   "dense run of equal epochs, or of the same regime for the long runs; mean +- SE over seeds):", "",
                   "| variant | regime | accuracy - dense |", "|---|---|---:|"]
            for regime, rows in runs[task].items():
                reference = runs[task]["long" if regime in OWN_BASELINE else "epochs"]
                base = {r["seed"]: r["accuracy"] for r in reference if r["variant"] == DENSE}
                for variant in dict.fromkeys(r["variant"] for r in rows):
                    if variant == DENSE and (regime == "epochs" or regime in OWN_BASELINE):
                        continue
                    diffs = [r["accuracy"] - base[r["seed"]] for r in rows
                             if r["variant"] == variant and r["seed"] in base]
                    if diffs:
                        mean, se = mean_se(diffs)
                        spread = f" +- {se:.3f}" if se is not None else ""
                        md.append(f"| {variant} | {regime} | {mean:+.3f}{spread} (n={len(diffs)}) |")
            md.append("")
    md += part5()
    (RESULTS / "table.md").write_text("\n".join(md) + "\n")
    (RESULTS / "summary.json").write_text(json.dumps({"seeds_planned": list(SEEDS), "variants": results, "runs": runs},
                                                     indent=2) + "\n")
    plot(results, RESULTS / "accuracy_vs_cost.png")
    readme = RESULTS.parent / "README.md"
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    if readme.exists() and start in readme.read_text():
        text = readme.read_text()
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        readme.write_text(head + start + "\n" + "\n".join(md) + "\n" + end + tail)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
