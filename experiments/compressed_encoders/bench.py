"""Dense vs compressed seed-004 encoders, measured in one run: FLOPs per example (per module type),
CPU training-step time (forward + backward of the neighbor-location model, interleaved), forward
time per module type, and peak memory of a training step.

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/bench.py \\
        --json experiments/compressed_encoders/results/bench_seed004.json

Speed targets live here (printed as ratios), never in unit tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

import structlayers
from atompaint.encoders import EncoderConfig, build_encoder
from atompaint.encoders.costs import COST_KINDS, _kind, encoder_cost, measure_peak_memory
from atompaint.tasks.neighbor_loc.count import encoder_form
from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
from atompaint.training.config import load_config
from structlayers.allocator import keep_freed_memory
from structlayers.base import count_params

warnings.filterwarnings("ignore", message=".*py3nj.*")

VARIANTS: dict[str, dict] = {
    "dense": {},
    "separable + acdc x2": dict(conv="separable", mixing="acdc", mixing_depth=2),
    "separable + acdc x2 + CG": dict(conv="separable", mixing="acdc", mixing_depth=2,
                                     tensor_product="clebsch-gordan"),
    "separable + dense mixing + CG": dict(conv="separable", tensor_product="clebsch-gordan"),
    "separable (irrep-wise depthwise) + acdc x2 + CG": dict(conv="separable", depthwise="irrep", mixing="acdc",
                                                            mixing_depth=2, tensor_product="clebsch-gordan"),
}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/neighbor_loc/seed004_gamma_log16.yaml")
    parser.add_argument("--batch", type=int, default=4, help="view pairs per training step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--memory-batch", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    keep_freed_memory()
    config = load_config(args.config)
    num_classes = config.data.num_classes
    base: EncoderConfig = config.encoder
    shape = (base.in_channels, base.input_size, base.input_size, base.input_size)
    models, rows = {}, {}
    for label, changes in VARIANTS.items():
        torch.manual_seed(0)
        encoder_config = replace(base, **changes)
        encoder = build_encoder(encoder_config)
        cost = encoder_cost(encoder)
        model = NeighborLocClassifier(encoder, num_classes, config.head)
        models[label] = model
        rows[label] = {
            "form": encoder_form(encoder_config),
            "encoder_params": count_params(encoder),
            "head_params": count_params(model.head),
            "encoder_flops_per_example": 2 * cost.total.total,
            "encoder_matmul_flops_per_example": 2 * cost.total.matmul,
            "encoder_flops_by_type": {k: 2 * v.total for k, v in cost.flops.items()},
            "forward_seconds_by_type": forward_seconds_by_type(encoder, torch.rand(1, *shape)),
        }
        if encoder_config.conv == "separable":
            rows[label]["test_time_forms"] = test_time_forms(encoder, torch.rand(2, *shape))
        print(label, rows[label]["encoder_flops_per_example"] / 1e9, "GFLOPs", flush=True)
    g = torch.Generator().manual_seed(0)
    views = (torch.rand(args.batch, *shape, generator=g), torch.rand(args.batch, *shape, generator=g))
    times: dict[str, list[float]] = {k: [] for k in models}
    for model in models.values():  # warm-up
        step_seconds(model, views)
    for r in range(args.repeats):  # interleaved
        for label, model in models.items():
            times[label].append(step_seconds(model, views))
            print(f"repeat {r} {label}: {times[label][-1]:.2f} s", flush=True)
    for label, model in models.items():
        mem_views = tuple(v[: args.memory_batch] for v in views) if args.memory_batch <= args.batch else tuple(
            torch.rand(args.memory_batch, *shape, generator=g) for _ in range(2))
        rows[label]["peak_memory_bytes"] = measure_peak_memory(model, mem_views)
        rows[label]["step_seconds"] = times[label]
        rows[label]["step_seconds_median"] = statistics.median(times[label])
    dense = rows["dense"]
    for row in rows.values():
        row["flops_ratio_vs_dense"] = dense["encoder_flops_per_example"] / row["encoder_flops_per_example"]
        row["speedup_vs_dense"] = dense["step_seconds_median"] / row["step_seconds_median"]
        row["memory_ratio_vs_dense"] = row["peak_memory_bytes"] / dense["peak_memory_bytes"]
    result = {
        "config": args.config, "batch": args.batch, "memory_batch": args.memory_batch, "repeats": args.repeats,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "variants": rows,
    }
    for label, row in rows.items():
        print(f"{label:32s} FLOPs/example {row['encoder_flops_per_example'] / 1e9:6.2f}G "
              f"({row['flops_ratio_vs_dense']:.2f}x)  step {row['step_seconds_median']:.2f}s "
              f"({row['speedup_vs_dense']:.2f}x)  peak {row['peak_memory_bytes'] / 2**30:.2f} GiB "
              f"({row['memory_ratio_vs_dense']:.2f}x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
