"""Monarch's bmm kernel (``_MonarchMultiply``: forward and hand-written backward with a unit stride in
every bmm operand) against the forward it replaced, each as a ratio to ``nn.Linear`` timed in the same
interleaved rounds, one thread, the bench's allocator setting; plus a profile of where each spends
its time.

    python experiments/bench/monarch_layout.py --out experiments/bench/monarch_layout.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.profiler import profile

import structlayers
from structlayers.lab.bench.allocator import keep_freed_memory
from structlayers.layers.monarch import Monarch
from structlayers.utils.timing import Timing, time_interleaved


def previous_forward(layer: Monarch, x: Tensor) -> Tensor:
    """The forward before this kernel (commit 8c9c368), for the comparison only."""
    b, r = layer.nblocks, layer.rank
    batch = x.shape[:-1]
    z = F.pad(x, (0, b * layer.in_block - layer.in_features)).reshape(-1, b, layer.in_block).transpose(0, 1)
    h = torch.bmm(z, layer.R)
    rows = h.shape[1]
    h = h.view(b, rows, b, r).permute(2, 1, 0, 3).reshape(b, rows, b * r)
    y = torch.bmm(h, layer.L).permute(1, 2, 0).reshape(*batch, layer.out_block * b)
    y = y[..., : layer.out_features] if y.shape[-1] != layer.out_features else y
    return y + layer.bias if layer.bias is not None else y


def ratios(t: Timing, base: Timing) -> dict[str, float]:
    """Per-round ``base / t`` (how many times faster than ``base``): median and quartiles."""
    per_round = sorted(b / a for a, b in zip(t.samples, base.samples))
    q = statistics.quantiles(per_round, n=4)
    return {"median": statistics.median(per_round), "q1": q[0], "q3": q[2]}


def op_profile(fn: Callable[[], object], calls: int = 5) -> dict[str, dict[str, float]]:
    """Self CPU time per call of ``fn`` of its aten ops above 2% of the total, and how often each runs."""
    fn()
    with profile() as prof:
        for _ in range(calls):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return {e.key: {"calls": e.count / calls, "self_ms": e.self_cpu_time_total / 1e3 / calls}
            for e in events if e.self_cpu_time_total > 0.02 * total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--nblocks", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    allocator = keep_freed_memory()
    torch.manual_seed(0)
    layer = structlayers.create("monarch", args.n, args.n, nblocks=args.nblocks)
    linear = torch.nn.Linear(args.n, args.n)
    x = torch.randn(args.batch, args.n)
    grad = torch.randn(args.batch, args.n)
    with torch.no_grad():
        identical = torch.equal(layer(x), previous_forward(layer, x))
    forms: dict[str, Callable[[Tensor], Tensor]] = {
        "nn.Linear": linear, "previous": lambda v: previous_forward(layer, v), "kernel": layer}

    def forward(f: Callable[[Tensor], Tensor]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return f(x)
        return run

    leaf = x.clone().requires_grad_(True)

    def forward_backward(f: Callable[[Tensor], Tensor]) -> Callable[[], object]:
        def run() -> None:
            for p in (*layer.parameters(), *linear.parameters(), leaf):
                p.grad = None
            f(leaf).backward(grad)
        return run

    load_before = os.getloadavg()
    modes = {}
    for mode, step in (("fwd", forward), ("fwd+bwd", forward_backward)):
        timings = dict(zip(forms, time_interleaved([step(f) for f in forms.values()], torch.device("cpu"),
                                                    warmup=3, repeats=args.repeats, min_time=5e-3)))
        base = timings["nn.Linear"]
        modes[mode] = {
            "ms": {k: 1e3 * t.median for k, t in timings.items()},
            "iqr_over_median": {k: t.spread for k, t in timings.items()},
            "speedup_over_linear": {k: ratios(t, base) for k, t in timings.items() if k != "nn.Linear"},
            "kernel_speedup_over_previous": ratios(timings["kernel"], timings["previous"]),
            "samples_s": {k: list(t.samples) for k, t in timings.items()},
        }
    load_after = os.getloadavg()
    record = {
        "command": f"python experiments/bench/monarch_layout.py --n {args.n} --nblocks {args.nblocks} "
                   f"--batch {args.batch} --repeats {args.repeats} --out {args.out}",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "allocator": allocator.describe()},
        "load_average_before": load_before, "load_average_after": load_after,
        "outputs_bit_identical": identical,
        "modes": modes,
        "profile_fwd_per_call": {k: op_profile(forward(forms[k])) for k in ("previous", "kernel")},
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    summary = {m: {"kernel / previous": v["kernel_speedup_over_previous"], "x linear": v["speedup_over_linear"]}
               for m, v in modes.items()}
    print(json.dumps({"load": [load_before, load_after], **summary}, indent=2))


if __name__ == "__main__":
    main()
