"""Redraw every committed figure from the data recorded beside it, with the current plotting code;
nothing is re-run or re-trained, and only figures that already exist are redrawn.

    python experiments/figures.py                 # every folder (also: make figures)
    python experiments/figures.py bench approx    # some of them

- ``approx/<study>.png`` from ``<study>.json`` (the record ``structlayers approx --json`` writes);
- ``bench/<run>.png`` from ``<run>.json`` (``structlayers bench --json``);
- ``compressed_encoders`` and ``neighbor_loc``: ``results/**/<run>/curves.png`` from the run's
  ``metrics.csv`` and ``summary.json``, titled by the run folder (``-seed<k>`` read as the seed);
  ``compressed_encoders/results[/<set>]/curves.png`` from ``runs.json``;
- ``residue_env/results/<run>.<split>.confusion.png`` from ``<run>.<split>.json``.

``approx/acdc_n32_*.png`` are drawn from their own, older record format (:func:`plot_legacy_acdc`).
The ``cifar10`` and ``mnist`` runs kept final values only (``metrics.json``), so they have no
committed curves.  ``task_accuracy`` draws its
own figure (``experiments/task_accuracy/summarize.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

EXPERIMENTS = Path(__file__).parent


def approx() -> list[Path]:
    from structlayers.lab.approx.experiment import ApproxResult
    from structlayers.lab.approx.plot import plot_result

    out = []
    for png in sorted((EXPERIMENTS / "approx").glob("*.png")):
        record = png.with_suffix(".json")
        if not record.exists():
            continue
        if png.name.startswith("acdc_n32_"):
            plot_legacy_acdc(json.loads(record.read_text()), png)
        else:
            plot_result(ApproxResult.from_json(record.read_text()), png)
        out.append(png)
    return out


def plot_legacy_acdc(record: dict, png: Path) -> None:
    """An ``acdc_n32_*`` record (the early Adam study, whose format predates
    :class:`ApproxResult`): relative error against parameters per K, mean +- std over the seeds,
    beside the truncated SVD of the same parameter count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config, rows = record["config"], [r for r in record["rows"] if r.get("depth") is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    params = [r["params"] for r in rows]
    ax.errorbar(params, [r["rel_error_mean"] for r in rows], yerr=[r["rel_error_std"] for r in rows], marker="o",
                capsize=3, label=f"acdc ({config['shuffle']} shuffle), K = {rows[0]['depth']}-{rows[-1]['depth']}")
    for r in rows:
        ax.annotate(f"K={r['depth']}", (r["params"], r["rel_error_mean"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
    ax.plot(params, [r["svd_rel_error"] for r in rows], "s--", color="grey", label="truncated SVD, same parameters")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("parameters")
    ax.set_ylabel("relative Frobenius error")
    seeds = config["seeds"]
    ax.set_title(f"acdc, {config['n']}x{config['n']} targets, {config['optimizer']} {config['steps']} steps, "
                 f"seeds {seeds[0]}-{seeds[-1]} ({png.stem})", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def bench() -> list[Path]:
    from structlayers.lab.bench.harness import BenchResult

    out = []
    for png in sorted((EXPERIMENTS / "bench").glob("*.png")):
        record = png.with_suffix(".json")
        if record.exists():
            BenchResult.from_json(record.read_text()).plot(str(png))
            out.append(png)
    return out


def run_curves(folder: Path) -> list[Path]:
    """The ``curves.png`` of every atompaint run under ``folder`` with its ``metrics.csv``."""
    from structlayers.lightning.curves import plot_curves, run_title

    out = []
    for png in sorted(folder.rglob("curves.png")):
        run = png.parent
        if not (run / "metrics.csv").exists():
            continue
        summary = json.loads((run / "summary.json").read_text())
        name, seed = run.name, summary.get("seed")
        if match := re.fullmatch(r"(.+)-seed(\d+)", name):
            name, seed = match[1], int(match[2])
        out.append(plot_curves(run / "metrics.csv", png, title=run_title(summary["task"], name, seed)))
    return out


def compressed_encoders() -> list[Path]:
    folder = EXPERIMENTS / "compressed_encoders"
    spec = importlib.util.spec_from_file_location("summarize", folder / "summarize.py")
    assert spec is not None and spec.loader is not None
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    out = run_curves(folder / "results")
    for table in sorted((folder / "results").rglob("runs.json")):
        png = table.parent / "curves.png"
        if png.exists():
            summarize.plot_runs(json.loads(table.read_text()), png)
            out.append(png)
    return out


def neighbor_loc() -> list[Path]:
    return run_curves(EXPERIMENTS / "neighbor_loc" / "results")


def residue_env() -> list[Path]:
    from atompaint.tasks.residue_env.evaluate import plot_confusion

    return [plot_confusion(json.loads(png.with_name(png.name.replace(".confusion.png", ".json")).read_text()), png)
            for png in sorted((EXPERIMENTS / "residue_env" / "results").glob("*.confusion.png"))]


FOLDERS = {"approx": approx, "bench": bench, "compressed_encoders": compressed_encoders,
           "neighbor_loc": neighbor_loc, "residue_env": residue_env}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*",
                        help=f"experiment folders to redraw (default: all of {', '.join(FOLDERS)})")
    args = parser.parse_args()
    if unknown := sorted(set(args.folders) - set(FOLDERS)):
        parser.error(f"no figures known in {', '.join(unknown)}; expected some of {', '.join(FOLDERS)}")
    for name in args.folders or FOLDERS:
        for png in FOLDERS[name]():
            print(f"wrote {png.relative_to(EXPERIMENTS.parent)}")


if __name__ == "__main__":
    main()
