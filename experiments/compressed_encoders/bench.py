"""Dense, dense + Clebsch-Gordan and compressed seed-004 encoders, measured in one run: FLOPs per
example (per module type), CPU training-step time (forward + backward of the neighbor-location
model, all variants interleaved, the paired ratios and their spread), forward time per module type,
peak memory of a training step, and the machine and its load (before, during, after).

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/bench.py --repeats 7 \\
        --json experiments/compressed_encoders/results/bench_seed004_v2.json

``--quick`` runs the same code on a band-limit-1 sanity shape in seconds (for tests).  A run is
marked ``noisy`` (:func:`noise_reasons`, rule in :data:`NOISE_RULE`); ``tables.py`` refuses noisy runs.
Speed targets live here (printed as ratios), never in unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

import structlayers
from atompaint.encoders import EncoderConfig, build_encoder, fused_available
from atompaint.encoders.costs import COST_KINDS, _kind, encoder_cost, measure_peak_memory
from atompaint.tasks.neighbor_loc.count import encoder_form
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from atompaint.training.config import load_config
from structlayers.base import count_params
from structlayers.lab.bench.allocator import AllocatorSettings, keep_freed_memory
from structlayers.utils.cache import cpu_description

warnings.filterwarnings("ignore", message=".*py3nj.*")

#: The variants, as changes to the config's encoder.  The first two are the baselines every ratio is
#: taken against: escnn's dense encoder, and the same with the Clebsch-Gordan tensor product.
VARIANTS: dict[str, dict] = {
    "dense": {},
    "dense + CG": dict(tensor_product="clebsch-gordan"),
    "separable + acdc x2 + CG": dict(conv="separable", mixing="acdc:depth=2",
                                     tensor_product="clebsch-gordan"),
    "separable + dense mixing + CG": dict(conv="separable", tensor_product="clebsch-gordan"),
    "irrep-wise + acdc x2 + CG": dict(conv="separable", depthwise="irrep", mixing="acdc:depth=2",
                                      tensor_product="clebsch-gordan"),
    "irrep-wise + dense mixing + CG": dict(conv="separable", depthwise="irrep", tensor_product="clebsch-gordan"),
    "irrep-wise + auto mixing + CG": dict(conv="separable", depthwise="irrep", mixing="auto",
                                          tensor_product="clebsch-gordan"),
    "grid + dense mixing": dict(conv="grid"),
    "grid + acdc x2": dict(conv="grid", mixing="acdc:depth=2"),
    # The seed-004 channel plan 5.5x wider (2 -> 11, 16 -> 88 channels): 34.2K encoder parameters and
    # 5.09G FLOPs per example, matching "irrep-wise + dense mixing + CG" (34.1K, 5.20G) in both
    # (results/grid_widths.json, grid_widths.py).
    "grid (matched params) + dense mixing": dict(conv="grid", width=11, max_channels=88),
}
BASELINES = ("dense", "dense + CG")

#: Which single change each pair of variants isolates (from, to): the decomposition of the gains.
DECOMPOSITION: tuple[tuple[str, str, str], ...] = (
    ("CG tensor product (dense convolutions)", "dense", "dense + CG"),
    ("separable convolutions, per-field depthwise, dense mixing", "dense + CG", "separable + dense mixing + CG"),
    ("irrep-wise depthwise step (dense mixing)", "separable + dense mixing + CG", "irrep-wise + dense mixing + CG"),
    ("irrep-wise depthwise step (ACDC x2 mixing)", "separable + acdc x2 + CG", "irrep-wise + acdc x2 + CG"),
    ("ACDC x2 instead of dense mixing (per-field)", "separable + dense mixing + CG", "separable + acdc x2 + CG"),
    ("ACDC x2 instead of dense mixing (irrep-wise)", "irrep-wise + dense mixing + CG", "irrep-wise + acdc x2 + CG"),
    ("auto (measured) instead of dense mixing (irrep-wise)", "irrep-wise + dense mixing + CG",
     "irrep-wise + auto mixing + CG"),
    ("grid domain instead of irrep-wise spectral (dense mixing)", "irrep-wise + dense mixing + CG",
     "grid + dense mixing"),
    ("grid domain at matched parameters instead of irrep-wise spectral (dense mixing)",
     "irrep-wise + dense mixing + CG", "grid (matched params) + dense mixing"),
    ("grid channels 5.5x wider (dense mixing)", "grid + dense mixing", "grid (matched params) + dense mixing"),
)

#: The stated rule for a run too noisy to record.
NOISE_RULE = {
    "min_repeats": 5,
    "max_load_above_threads": 0.5,
    "max_ratio_iqr_over_median": 0.15,
    "text": "noisy when fewer than 5 paired steps, or the 1-minute load average before, during or after the "
            "timed steps exceeds the bench's own threads + 0.5, or any paired ratio's interquartile range "
            "exceeds 15% of its median",
}

#: The sanity shape of ``--quick``: band limit 1, 9^3 views, 2 -> 4 fields.
QUICK = dict(band_limit=1, input_size=9, width=2, max_channels=4)


def machine(allocator: AllocatorSettings | None = None) -> dict:
    """What the timings were taken on: CPU model (with its family, model and stepping numbers and vector
    width), cores, threads, torch and Python versions (no hostname), and whether the Clebsch-Gordan
    tensor products ran the fused kernel or their plain-PyTorch form, and the allocator's settings from the
    environment (glibc ``MALLOC_*`` variables, ``LD_PRELOAD``: they decide how often large temporaries
    are mapped afresh and page-faulted in, which this memory-bound step feels), and ``allocator``'s
    settings where the run set them (:func:`~structlayers.lab.bench.allocator.keep_freed_memory`)."""
    cpu = cpu_description()
    return {"cpu": cpu["name"], "cpu_id": {k: v for k, v in cpu.items() if k != "name"}, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
            "python": platform.python_version(), "system": f"{platform.system()} {platform.machine()}",
            "cg_tensor_product": "fused kernel" if fused_available() else "plain PyTorch",
            "allocator_env": {k: v for k, v in sorted(os.environ.items())
                              if k.startswith("MALLOC_") or k == "LD_PRELOAD"},
            **({"allocator": allocator.describe()} if allocator is not None else {})}


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def micro_parser(description: str, *, batch: int = 8, repeats: int = 7) -> argparse.ArgumentParser:
    """The command line every micro-benchmark shares: ``--batch`` (volumes), ``--repeats`` (paired
    rounds), ``--json`` (where :func:`write_micro` writes the record)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--json", type=Path, default=None)
    return parser


def write_micro(script: str, json_path: Path | None, load_before: list[float], **fields) -> dict:
    """A micro-benchmark's record: its command line, ``fields``, the machine and the load before and
    now; written to ``json_path`` when given."""
    result = {"command": f"python experiments/compressed_encoders/{script} " + " ".join(sys.argv[1:]), **fields,
              "machine": machine(), "load_average": {"before": load_before, "after": load_average()}}
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
    return result


def spread(values: list[float]) -> dict:
    """Min / quartiles / median / max of paired ratios and the IQR relative to the median."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else 3 * values
    return {"min": min(values), "q1": q1, "median": median, "q3": q3, "max": max(values),
            "iqr_over_median": (q3 - q1) / median if median else 0.0, "values": values}


def paired_ratio(base: list[float], other: list[float]) -> dict:
    """``base[r] / other[r]`` per interleaved round r (a speed-up of ``other`` over ``base``) and its spread."""
    return spread([a / b for a, b in zip(base, other)])


def noise_reasons(result: dict) -> list[str]:
    """Why a bench result is too noisy to record (:data:`NOISE_RULE`); empty when it is clean."""
    rule, reasons = NOISE_RULE, []
    if result["repeats"] < rule["min_repeats"]:
        reasons.append(f"{result['repeats']} paired steps < {rule['min_repeats']}")
    limit = result["machine"]["torch_threads"] + rule["max_load_above_threads"]
    for when in ("before", "during", "after"):
        loads = result["load_average"][when]
        worst = max(row[0] for row in loads) if when == "during" else loads[0]
        if worst > limit:
            reasons.append(f"1-minute load {when} {worst:.2f} > {limit:.2f}")
    for label, row in result["variants"].items():
        for base in BASELINES:
            ratio = row["speedup"].get(base)
            if ratio and ratio["iqr_over_median"] > rule["max_ratio_iqr_over_median"]:
                reasons.append(f"{label} vs {base}: paired-ratio IQR {100 * ratio['iqr_over_median']:.0f}% of median")
    return reasons


def training_step(config_path: str, variant: str, batch: int) -> tuple[torch.nn.Module, Callable[[], None]]:
    """The neighbor-location model of ``config_path`` with ``variant``'s encoder (train mode, seed 0) and
    its training step (gradients zeroed, forward, cross-entropy, backward) on a fixed batch of
    ``batch`` random view pairs: what the per-step scripts (``module_times.py``,
    ``allocator_faults.py``) time."""
    config = load_config(config_path)
    encoder_config = replace(config.encoder, **VARIANTS[variant])
    torch.manual_seed(0)
    model = NeighborLocClassifier(build_encoder(encoder_config), config.data.num_classes, config.head).train()
    shape = (encoder_config.in_channels, *3 * [encoder_config.input_size])
    generator = torch.Generator().manual_seed(0)
    views = tuple(torch.rand(batch, *shape, generator=generator) for _ in range(2))
    target = torch.zeros(batch, dtype=torch.long)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(*views), target).backward()

    return model, step


def step_seconds(model: torch.nn.Module, views: tuple[torch.Tensor, torch.Tensor]) -> float:
    """One training-mode forward + backward of the classifier on a batch of view pairs."""
    model.train()
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    logits = model(*views)
    torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long)).backward()
    return time.perf_counter() - start


def forward_seconds_by_type(encoder: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Eval-mode forward seconds of each module type (hooks around every counted module)."""
    spent: dict[str, float] = {k: 0.0 for k in COST_KINDS}
    started: dict[int, float] = {}
    handles = []
    for module in encoder.modules():
        kind = _kind(module)
        if kind is None:
            continue
        handles.append(module.register_forward_pre_hook(lambda m, a: started.__setitem__(id(m), time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda m, a, o, kind=kind: spent.__setitem__(kind, spent[kind] + time.perf_counter() - started[id(m)])))
    encoder.eval()
    with torch.no_grad():
        encoder.fields(x)  # warm-up: escnn caches expanded filters in eval mode
        for k in spent:
            spent[k] = 0.0
        start = time.perf_counter()
        encoder.fields(x)
        total = time.perf_counter() - start
    for h in handles:
        h.remove()
    spent["total"] = total
    return spent


def test_time_forms(encoder: torch.nn.Module, x: torch.Tensor) -> dict:
    """Export and collapse of one encoder: their largest relative output error, and what collapse chose."""
    encoder.eval()
    with torch.no_grad():
        reference = encoder.fields(x)
        exported = encoder.export()
        collapsed, report = structlayers.collapse(exported, x)

        def rel(y: torch.Tensor) -> float:
            return float((y - reference).abs().max() / reference.abs().max())

        return {"export_max_rel_error": rel(exported.fields(x)), "collapse_max_rel_error": rel(collapsed.fields(x)),
                "collapse_choices": [{"module": c.name, "shape": f"{c.in_features}->{c.out_features}", "rows": c.rows,
                                      "structured_flops": c.structured_cost, "dense_flops": c.dense_cost,
                                      "chosen": c.chosen} for c in report.choices]}


def build_variants(base: EncoderConfig, labels: list[str], config, batch: int) -> tuple[dict, dict]:
    """The classifier of every variant (seed 0) and its static description (form, parameters, FLOPs);
    ``mixing: auto`` is measured at the step's ``2 * batch`` volumes."""
    shape = (base.in_channels, *3 * [base.input_size])
    models, rows = {}, {}
    for label in labels:
        torch.manual_seed(0)
        encoder = build_encoder(replace(base, **VARIANTS[label], mixing_batch=2 * batch))
        encoder_config = encoder.config
        cost = encoder_cost(encoder)
        models[label] = NeighborLocClassifier(encoder, config.data.num_classes, config.head)
        rows[label] = {
            "changes": VARIANTS[label],
            "form": encoder_form(encoder_config),
            "encoder_params": count_params(encoder),
            "head_params": count_params(models[label].head),
            "encoder_flops_per_example": 2 * cost.total.total,
            "encoder_matmul_flops_per_example": 2 * cost.total.matmul,
            "encoder_flops_by_type": {k: 2 * v.total for k, v in cost.flops.items()},
            "forward_seconds_by_type": forward_seconds_by_type(encoder, torch.rand(1, *shape)),
        }
        if encoder_config.mixing_choices:
            rows[label]["mixing_choices"] = encoder_config.mixing_choices
            rows[label]["mixing_seconds"] = encoder.mixing_seconds
        if encoder_config.conv != "dense":
            rows[label]["test_time_forms"] = test_time_forms(encoder, torch.rand(2, *shape))
        print(f"{label}: {rows[label]['encoder_flops_per_example'] / 1e9:.3f} GFLOPs per example", flush=True)
    return models, rows


def run(args: argparse.Namespace) -> dict:
    allocator = keep_freed_memory(map_large=args.map_large)
    config = load_config(args.config)
    base: EncoderConfig = replace(config.encoder, **QUICK) if args.quick else config.encoder
    labels = list(dict.fromkeys([*BASELINES, *(args.variants or VARIANTS)]))
    load_before = load_average()
    models, rows = build_variants(base, labels, config, args.batch)
    shape = (base.in_channels, *3 * [base.input_size])
    g = torch.Generator().manual_seed(0)
    views = (torch.rand(args.batch, *shape, generator=g), torch.rand(args.batch, *shape, generator=g))
    times: dict[str, list[float]] = {k: [] for k in models}
    for model in models.values():  # warm-up
        step_seconds(model, views)
    load_timed_start = load_average()
    during = []
    for r in range(args.repeats):  # interleaved: one step of every variant per round
        for label, model in models.items():
            times[label].append(step_seconds(model, views))
            print(f"repeat {r} {label}: {times[label][-1]:.3f} s", flush=True)
        during.append(load_average())
    load_after = load_average()
    for label, model in models.items():
        rows[label]["peak_memory_bytes"] = measure_peak_memory(model, tuple(v[: args.memory_batch] for v in views))
        rows[label]["step_seconds"] = times[label]
        rows[label]["step_seconds_median"] = statistics.median(times[label])
        # Forward FLOPs of the encoder per training step (examples x FLOPs per example) per second.
        rows[label]["achieved_gflops_per_s"] = (
            args.batch * rows[label]["encoder_flops_per_example"] / rows[label]["step_seconds_median"] / 1e9)
    for label, row in rows.items():
        row["speedup"] = {b: paired_ratio(times[b], times[label]) for b in BASELINES}
        row["flops_ratio"] = {b: rows[b]["encoder_flops_per_example"] / row["encoder_flops_per_example"]
                              for b in BASELINES}
        row["memory_ratio"] = {b: row["peak_memory_bytes"] / rows[b]["peak_memory_bytes"] for b in BASELINES}
        row["achieved_rate_vs"] = {b: row["achieved_gflops_per_s"] / rows[b]["achieved_gflops_per_s"]
                                   for b in BASELINES}
    result = {
        "command": args.command, "config": args.config, "quick": args.quick, "encoder": asdict(base),
        "batch": args.batch, "memory_batch": args.memory_batch, "repeats": args.repeats,
        "machine": machine(allocator),
        "load_average": {"before": load_before, "timed_start": load_timed_start, "during": during,
                         "after": load_after},
        "noise_rule": NOISE_RULE, "variants": rows,
        "decomposition": [{"change": change, "from": a, "to": b, "speedup": paired_ratio(times[a], times[b]),
                           "flops_ratio": rows[a]["encoder_flops_per_example"] / rows[b]["encoder_flops_per_example"]}
                          for change, a, b in DECOMPOSITION if a in rows and b in rows],
    }
    result["noise_reasons"] = noise_reasons(result)
    result["noisy"] = bool(result["noise_reasons"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/neighbor_loc/seed004_gamma_log16.yaml")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=None,
                        help="variants besides the two baselines (default: all)")
    parser.add_argument("--batch", type=int, default=4, help="view pairs per training step")
    parser.add_argument("--repeats", type=int, default=7, help="paired timed steps per variant (after one warm-up)")
    parser.add_argument("--memory-batch", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="band-limit-1 sanity shape (seconds, for tests)")
    parser.add_argument("--map-large", action="store_true",
                        help="let glibc map allocations over 32 MiB fresh (the setting of runs before v11)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.memory_batch = min(args.memory_batch, args.batch)
    args.command = "python experiments/compressed_encoders/bench.py " + " ".join(sys.argv[1:])
    result = run(args)
    for label, row in result["variants"].items():
        s, c = row["speedup"]["dense"], row["speedup"]["dense + CG"]
        print(f"{label:32s} FLOPs/example {row['encoder_flops_per_example'] / 1e9:7.3f}G  step "
              f"{row['step_seconds_median']:.3f}s  vs dense {s['median']:.2f}x [{s['min']:.2f}-{s['max']:.2f}]  "
              f"vs dense+CG {c['median']:.2f}x [{c['min']:.2f}-{c['max']:.2f}]  "
              f"peak {row['peak_memory_bytes'] / 2**30:.2f} GiB  rate {row['achieved_gflops_per_s']:.2f} GFLOP/s")
    print("load before / after:", result["load_average"]["before"], result["load_average"]["after"])
    print("NOISY: " + "; ".join(result["noise_reasons"]) if result["noisy"] else "clean by the noise rule")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
