"""The README's benchmark tables, written from a bench JSON (``bench.py --json``): every variant
against dense and against dense + CG (paired ratios with their spread), memory, achieved rate, and
the decomposition of the gains by change.  A run the noise rule marks ``noisy``, or one without a
machine description (the runs before ``bench.py`` recorded it), is refused unless
``--allow-noisy``, and then every table says so.

    python experiments/compressed_encoders/tables.py experiments/compressed_encoders/results/bench_seed004_v2.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class NotRecordable(ValueError):
    """The bench JSON is noisy or lacks the machine description its ratios need."""


def check(result: dict) -> list[str]:
    """Why ``result`` cannot be recorded (empty when it can)."""
    if "machine" not in result or "load_average" not in result:
        return ["no machine description or load average: measured on an unrecorded machine state"]
    return list(result.get("noise_reasons", [])) if result.get("noisy") else []


def _ratio(r: dict) -> str:
    return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}; IQR {100 * r['iqr_over_median']:.0f}%)"


def _g(flops: float) -> str:
    return f"{flops / 1e9:.2f}G" if flops >= 1e8 else f"{flops / 1e6:.1f}M"


def header(result: dict) -> str:
    m, load = result["machine"], result["load_average"]
    during = max(row[0] for row in load["during"]) if load["during"] else float("nan")
    # Runs before the fused kernel existed do not say: their tensor products ran the plain-PyTorch form.
    products = m.get("cg_tensor_product", "plain PyTorch")
    ident = m.get("cpu_id", {})
    cpu = m["cpu"] + (f" ({', '.join(f'{k} {v}' for k, v in ident.items())})" if ident else "")
    # Runs before the allocator's settings were recorded ran bench.py's keep_freed_memory() of then.
    allocator = "; ".join([m.get("allocator", "glibc malloc, allocations over 32 MiB mapped, trim threshold 1024 MiB"),
                           *(f"{k}={v}" for k, v in m.get("allocator_env", {}).items())])
    return (f"Machine: {cpu}, {m['cores']} cores, {m['torch_threads']} torch thread(s), torch {m['torch']}, "
            f"Clebsch-Gordan tensor products: {products}, allocator: {allocator}; "
            f"1-minute load average before {load['before'][0]:.2f}, at most {during:.2f} during the timed steps, "
            f"after {load['after'][0]:.2f}. {result['repeats']} paired steps of batch {result['batch']} pairs "
            f"(`{result['command']}`).")


def variant_table(result: dict) -> str:
    rows = result["variants"]
    dense_rate = rows["dense"]["achieved_gflops_per_s"]
    lines = ["| variant | encoder FLOPs / example | FLOPs vs dense / vs dense + CG | step, median (s) | "
             "speed-up vs dense (min-max; IQR) | speed-up vs dense + CG (min-max; IQR) | peak memory (GiB) | "
             "memory vs dense / vs dense + CG | achieved GFLOP/s (% of dense) | encoder params |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, row in rows.items():
        lines.append(
            f"| {label} | {_g(row['encoder_flops_per_example'])} | {row['flops_ratio']['dense']:.2f}x / "
            f"{row['flops_ratio']['dense + CG']:.2f}x | {row['step_seconds_median']:.3f} | "
            f"{_ratio(row['speedup']['dense'])} | {_ratio(row['speedup']['dense + CG'])} | "
            f"{row['peak_memory_bytes'] / 2**30:.2f} | {row['memory_ratio']['dense']:.2f}x / "
            f"{row['memory_ratio']['dense + CG']:.2f}x | {row['achieved_gflops_per_s']:.2f} "
            f"({100 * row['achieved_gflops_per_s'] / dense_rate:.0f}%) | {row['encoder_params'] / 1e3:.1f}K |")
    return "\n".join(lines)


def decomposition_table(result: dict) -> str:
    lines = ["| change | from | to | FLOPs ratio | step speed-up, paired (min-max; IQR) |",
             "|---|---|---|---:|---:|"]
    for d in result["decomposition"]:
        lines.append(f"| {d['change']} | {d['from']} | {d['to']} | {d['flops_ratio']:.2f}x | {_ratio(d['speedup'])} |")
    return "\n".join(lines)


def tables(result: dict, *, allow_noisy: bool = False) -> str:
    """The markdown tables of one bench result; raises :class:`NotRecordable` for a noisy run unless allowed."""
    reasons = check(result)
    if reasons and not allow_noisy:
        raise NotRecordable("refusing to tabulate: " + "; ".join(reasons))
    parts = []
    if reasons:
        parts.append("**NOISY RUN, NOT A RECORDED RESULT**: " + "; ".join(reasons) + ".")
    if "machine" in result:
        parts.append(header(result))
    parts += [variant_table(result), "Which change gives which part of the gain (paired within the run):",
              decomposition_table(result)]
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path)
    parser.add_argument("--allow-noisy", action="store_true", help="tabulate a noisy run, marked as such")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    try:
        text = tables(json.loads(args.bench_json.read_text()), allow_noisy=args.allow_noisy)
    except NotRecordable as err:
        sys.exit(str(err))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
