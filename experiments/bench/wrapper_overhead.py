"""Cost of the checks every plugin call makes (an active FlopCounterMode? a half-precision input or
autocast?), measured against the same forward without them (``forward.__wrapped__``), interleaved in
the same process; small shapes, where a fixed per-call cost shows most.

    python experiments/bench/wrapper_overhead.py --out experiments/bench/wrapper_overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

import structlayers
from structlayers.lab.bench.allocator import keep_freed_memory
from structlayers.utils.timing import time_interleaved

CASES = [("acdc", 256, 1, {}), ("acdc", 256, 128, {}), ("acdc", 1024, 128, {}), ("stack", 256, 1, {"depth": 4}),
         ("stack", 1024, 128, {"depth": 16}), ("afdf", 256, 128, {}), ("acdc", 256, 128, {"backend": "dense"})]


def measure(repeats: int) -> list[dict]:
    rows = []
    for name, n, batch, options in CASES:
        layer = structlayers.create(name, n, n, **options)
        x = torch.randn(batch, n)
        bare = type(layer).forward.__wrapped__
        for mode in ("inference", "training"):
            xg = x.clone().requires_grad_(mode == "training")

            def wrapped(layer=layer, xg=xg, mode=mode) -> None:
                y = layer(xg)
                if mode == "training":
                    y.sum().backward()

            def unwrapped(layer=layer, xg=xg, mode=mode, bare=bare) -> None:
                y = bare(layer, xg)
                if mode == "training":
                    y.sum().backward()

            ctx = torch.no_grad() if mode == "inference" else torch.enable_grad()
            with ctx:
                # The fastest call of each turn: the least disturbed estimate on a shared machine.
                t_wrapped, t_bare = time_interleaved([wrapped, unwrapped], torch.device("cpu"), warmup=3,
                                                     repeats=repeats, min_time=5e-3, per_turn="min")
            rows.append({"layer": name, "n": n, "batch": batch, "options": options, "mode": mode,
                         "wrapped_us": t_wrapped.median * 1e6, "bare_us": t_bare.median * 1e6,
                         "ratio": t_wrapped.paired_ratio(t_bare), "spread": max(t_wrapped.spread, t_bare.spread)})
            print(f"{name:6s} n={n:5d} batch={batch:4d} {options} {mode:9s} "
                  f"{rows[-1]['wrapped_us']:9.1f} us vs {rows[-1]['bare_us']:9.1f} us: ratio {rows[-1]['ratio']:.3f}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    keep_freed_memory()
    results = measure(args.repeats)
    if args.out:
        args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                        "threads": torch.get_num_threads(), "torch": torch.__version__,
                                        "rows": results}, indent=2))
