"""Where one training step's time goes, per encoder unit, without a profiler.

Every unit call of one step (convolutions, mixings, batch norms, Fourier activations, tensor products,
poolings) is replayed alone on a copy of its recorded input, forward and backward timed apart (median
of ``--repeats``); irrep-wise separable convolutions are also split into their input gather (index
select + channels-last copy), the grouped convolutions and the mixing.  The step itself is timed too;
the difference is what runs outside the units (residual sums, read-out, head, loss, autograd).  The
allocator is set as in bench.py.  Unlike torch.profiler, which adds its own cost to every one of the
step's many small calls, this leaves the step as it runs; the sum of the units alone is its check.

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/module_times.py \\
        --variant "irrep-wise + dense mixing + CG" --json experiments/compressed_encoders/results/module_times.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from escnn import nn as enn
from torch import Tensor

from atompaint.encoders.mixing import IrrepMixing
from atompaint.encoders.separable import SeparableR3Conv, channels_last
from structlayers.lab.bench.allocator import keep_freed_memory

sys.path.insert(0, str(Path(__file__).parent))
import bench

#: The units timed, by the name they are reported under.
UNITS: dict[str, tuple[type, ...]] = {
    "separable conv": (SeparableR3Conv,), "dense conv (escnn)": (enn.R3Conv,), "pointwise mixing": (IrrepMixing,),
    "batch norm": (enn.IIDBatchNorm3d,), "Fourier activation": (enn.FourierPointwise,),
    "pooling": (enn.PointwiseAvgPoolAntialiased3D,), "tensor product": (enn.TensorProductModule,),
}


def unit_kind(module: torch.nn.Module) -> str | None:
    from atompaint.encoders.tensor_product import CGTensorProduct

    if isinstance(module, CGTensorProduct):
        return "tensor product"
    return next((name for name, types in UNITS.items() if isinstance(module, types)), None)


def detached(value):
    """A leaf copy of ``value`` (tensors, geometric tensors, tuples of them), in the same memory layout."""
    if isinstance(value, enn.GeometricTensor):
        return enn.GeometricTensor(detached(value.tensor), value.type)
    if isinstance(value, Tensor):
        return value.detach().clone(memory_format=torch.preserve_format).requires_grad_(value.is_floating_point())
    if isinstance(value, tuple):
        return tuple(detached(v) for v in value)
    return value


def outputs(value) -> list[Tensor]:
    """The tensors of a unit's output (a tensor, a geometric tensor or a tuple of them)."""
    if isinstance(value, tuple):
        return [t for v in value for t in outputs(v)]
    return [value.tensor if isinstance(value, enn.GeometricTensor) else value]


def median_seconds(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_call(forward, repeats: int) -> tuple[float, float]:
    """Median forward and backward seconds of ``forward()`` (a fresh graph each round)."""
    grads = [torch.randn_like(t.detach()) for t in outputs(forward())]
    fwd, bwd = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = outputs(forward())
        middle = time.perf_counter()
        torch.autograd.backward(out, grads)
        fwd.append(middle - start)
        bwd.append(time.perf_counter() - middle)
    return statistics.median(fwd), statistics.median(bwd)


def separable_parts(conv: SeparableR3Conv, x: enn.GeometricTensor, repeats: int) -> dict[str, tuple[float, float]]:
    """Gather + channels-last copy, grouped convolutions, mixing of one irrep-wise separable convolution."""
    core, keys = conv.depthwise.core, list(conv.mixing.linear.maps)
    source = x.tensor

    def gather():
        return tuple(channels_last(source.index_select(1, getattr(core, f"{k}_index"))) for k in keys)

    gathered = [detached(channels_last(source.detach().index_select(1, getattr(core, f"{k}_index")))) for k in keys]
    parts = detached(core.parts(source.detach(), keys))
    return {"input gather": time_call(gather, repeats),
            "grouped convolutions": time_call(
                lambda: tuple(core.convs[k](p) for k, p in zip(keys, gathered)), repeats),
            "mixing": time_call(lambda: conv.mixing(parts), repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/neighbor_loc/seed004_gamma_log16.yaml")
    parser.add_argument("--variant", default="irrep-wise + dense mixing + CG", choices=list(bench.VARIANTS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    allocator = keep_freed_memory()  # as bench.py
    load_before = bench.load_average()
    model, step = bench.training_step(args.config, args.variant, args.batch)
    step()
    step_seconds = median_seconds(step, args.repeats)
    nested = {id(sub) for m in model.modules() if unit_kind(m) for sub in m.modules() if sub is not m}
    calls: list[tuple[str, torch.nn.Module, tuple]] = []
    handles = [m.register_forward_pre_hook(lambda module, a: calls.append((unit_kind(module), module, detached(a))))
               for m in model.modules() if unit_kind(m) and id(m) not in nested]
    step()
    for handle in handles:
        handle.remove()

    rows, totals, split = [], defaultdict(lambda: [0.0, 0.0]), defaultdict(lambda: [0.0, 0.0])
    for kind, module, inputs in calls:
        fwd, bwd = time_call(lambda module=module, inputs=inputs: module(*inputs), args.repeats)
        totals[kind][0] += fwd
        totals[kind][1] += bwd
        row = {"unit": kind, "input": [list(t.shape) for t in outputs(inputs[0])], "forward_s": fwd,
               "backward_s": bwd}
        if isinstance(module, SeparableR3Conv) and module.irrepwise:
            parts = separable_parts(module, inputs[0], args.repeats)
            row["parts"] = {name: {"forward_s": f, "backward_s": b} for name, (f, b) in parts.items()}
            for name, (f, b) in parts.items():
                split[name][0] += f
                split[name][1] += b
        rows.append(row)
        print(f"{kind:20s} {str(row['input']):45s} fwd {1e3 * fwd:7.1f} ms  bwd {1e3 * bwd:7.1f} ms", flush=True)
    units_total = sum(f + b for f, b in totals.values())
    summary = {kind: {"forward_s": f, "backward_s": b, "share_of_step": (f + b) / step_seconds}
               for kind, (f, b) in sorted(totals.items(), key=lambda kv: -sum(kv[1]))}
    print(f"\n{args.variant}: step {step_seconds:.3f} s (median of {args.repeats}); units alone {units_total:.3f} s")
    for kind, row in summary.items():
        print(f"  {kind:22s} fwd {row['forward_s']:.3f} s  bwd {row['backward_s']:.3f} s  "
              f"{100 * row['share_of_step']:.1f}% of the step")
    print(f"  {'outside the units':22s} {step_seconds - units_total:.3f} s")
    for name, (f, b) in split.items():
        print(f"  irrep-wise separable conv, {name}: fwd {f:.3f} s  bwd {b:.3f} s  {100 * (f + b) / step_seconds:.1f}%")
    bench.write_micro("module_times.py", args.json, load_before, allocator=allocator.describe(),
                      variant=args.variant, batch=args.batch,
                      repeats=args.repeats, step_seconds=step_seconds, units_seconds=units_total, by_unit=summary,
                      irrepwise_split={k: {"forward_s": f, "backward_s": b} for k, (f, b) in split.items()},
                      calls=rows)


if __name__ == "__main__":
    main()
