"""Print the Markdown tables of experiments/approx/README.md from the recorded JSON files, or
re-draw every study's plot from its JSON.

    python experiments/approx/tables.py [log|gaussian|families|all|plots]

A starred value means that not every seed's fit converged (its error is an upper bound).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHUFFLES = ("random", "riffle", "none")


def load(name: str) -> dict:
    return json.loads((HERE / name).read_text())


def cell(mean: float, std: float, converged: int | None = None, seeds: int | None = None, digits: int = 4) -> str:
    star = "*" if converged is not None and seeds is not None and converged < seeds else ""
    return f"{mean:.{digits}f} +- {std:.{digits}f}{star}"


def log_table() -> None:
    lbfgs, cg = load("log_protocol_lbfgs.json"), load("log_protocol_cg1000.json")
    cg_rows = {(r["depth"], r["shuffle"]): r for r in cg["rows"]}
    print("| K | params | shuffle | ours, L-BFGS (converged) | ours, CG 1000 iterations | 2018, CG 1000 iterations "
          "| bias-free floor |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    rows = sorted(lbfgs["rows"], key=lambda r: (r["depth"], SHUFFLES.index(r["shuffle"])))
    for r in rows:
        c = cg_rows[(r["depth"], r["shuffle"])]
        print(f"| {r['depth']} | {r['params']} | {r['shuffle']} | {cell(r['mse_mean'], r['mse_std'])} "
              f"({r['converged']}/{r['seeds']}) | {cell(c['mse_mean'], c['mse_std'])} "
              f"| {cell(r['reference_mse'], r['reference_std'])} | {r['floor_mse']:.5f} |")


def gaussian_table() -> None:
    data = load("gaussian_acdc_lbfgs.json")
    by = {(r["depth"], r["shuffle"]): r for r in data["rows"]}
    adam = {}
    for shuffle in SHUFFLES:
        for r in load(f"acdc_n32_{shuffle}.json")["rows"]:
            adam[(r["depth"], shuffle)] = r
    trf_file = HERE / "gaussian_acdc_trf.json"
    trf = {r["depth"]: r for r in load(trf_file.name)["rows"]} if trf_file.exists() else {}
    depths = sorted({d for d, _ in by})
    print("| K | params | random | riffle | none | random, Adam 1000 | random, TRF | SVD, exact count (rank) "
          "| random features | beats SVD (random / riffle / none) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for d in depths:
        rows = [by.get((d, s)) or by.get((d, "-")) for s in SHUFFLES]
        first = rows[0]
        cells = [cell(r["rel_error_mean"], r["rel_error_std"], r["converged"], r["seeds"], 3) for r in rows]
        old = adam.get((d, "random"))
        t = trf.get(d)
        print(f"| {d} | {first['params']} | {' | '.join(cells)} | "
              f"{cell(old['rel_error_mean'], old['rel_error_std'], digits=3) if old else '-'} | "
              f"{cell(t['rel_error_mean'], t['rel_error_std'], t['converged'], t['seeds'], 3) if t else '-'} | "
              f"{first['svd_rel_error']:.3f} ({first['svd_rank']}) | {first['rf_rel_error']:.3f} | "
              f"{' / '.join(r['beats_svd'] for r in rows)} |")
    conv = [(r["depth"], r["shuffle"], r["converged"], r["seeds"], r["steps_median"], r["grad_norm_max"])
            for r in data["rows"] if r["converged"] < r["seeds"]]
    if conv:
        print("\nNot converged (K, shuffle, converged seeds, median steps, largest |grad|): "
              + "; ".join(f"{d} {s} {c}/{n} {st:.0f} {g:.1e}" for d, s, c, n, st, g in conv))


def family_of(config: str) -> str:
    return config.split(" ")[0]


def families_table(name: str) -> None:
    data = load(f"families_{name}.json")
    rows = data["rows"]
    budgets = sorted({r["budget"] for r in rows})
    by_family: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        by_family[family_of(r["config"])][r["budget"]] = r
    print(f"Target: {data['target']}.  Relative Frobenius error (mean over {rows[0]['seeds']} seeds) at each "
          "budget, the configuration chosen, and its measured forward time (us, float32, 256 rows, 1 thread).\n")
    print("| family | " + " | ".join(f"<= {b}" for b in budgets) + " |")
    print("|---|" + "---:|" * len(budgets))
    for family, cells in by_family.items():
        out = []
        for b in budgets:
            r = cells.get(b)
            if r is None:  # the same configuration as a smaller budget (fitted once), or none fits
                fits = [c for c in cells.values() if c["params"] <= b]
                out.append(f"= {max(fits, key=lambda c: c['params'])['rel_error_mean']:.3f}" if fits else "-")
                continue
            star = "*" if r["converged"] < r["seeds"] else ""
            config = r["config"][len(family):].strip() or "1 layer"
            out.append(f"{r['rel_error_mean']:.3f}{star} ({config}; {r['params']}; {r['forward_us']:.0f} us)")
        print(f"| {family} | " + " | ".join(out) + " |")
    svd = {r["budget"]: r for r in rows}
    print("| truncated SVD, exact count | " + " | ".join(
        f"{svd[b]['svd_rel_error']:.3f} (rank {svd[b]['svd_rank']})" if b in svd else "-" for b in budgets) + " |")
    print("| random features | " + " | ".join(
        f"{svd[b]['rf_rel_error']:.3f}" if b in svd else "-" for b in budgets) + " |")
    best = {}
    for b in budgets:  # a family's smaller configuration counts at every larger budget (the "=" cells)
        scored = [(r["rel_error_mean"], family_of(r["config"])) for r in rows if r["params"] <= b]
        best[b] = min(scored)
    print("\nLowest error per budget: " + "; ".join(f"{b}: {f} {e:.3f}" for b, (e, f) in best.items()))
    linear = [r for r in rows if not math.isnan(r["vs_linear"])]
    if linear:
        print(f"Forward time / nn.Linear's (same shape, same rounds) at the budget {budgets[2]}: " + ", ".join(
            f"{family_of(r['config'])} {r['vs_linear']:.1f}x" for r in rows if r["budget"] == budgets[2]))


def plots() -> None:
    from structlayers.lab.approx.experiment import ApproxResult
    from structlayers.lab.approx.plot import plot_result

    for path in sorted(HERE.glob("*.json")):
        png, text = path.with_suffix(".png"), path.read_text()
        if png.exists() and '"jobs"' in text:  # studies with a plot, in the current format (not acdc_n32_*)
            plot_result(ApproxResult.from_json(text), png)
            print(f"re-drew {png.name}")


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which == "plots":
        plots()
        return
    if which in ("log", "all"):
        log_table()
        print()
    if which in ("gaussian", "all"):
        gaussian_table()
        print()
    if which in ("families", "all"):
        for path in sorted(HERE.glob("families_*.json")):
            print(f"### {path.stem}\n")
            families_table(path.stem.removeprefix("families_"))
            print()


if __name__ == "__main__":
    main()
