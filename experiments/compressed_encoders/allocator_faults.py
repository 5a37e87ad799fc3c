"""Page faults and system time of the training step under three glibc allocator settings, each in a
fresh process (one thread): glibc's defaults; ``keep_freed_memory(map_large=True)`` (heap below 32 MiB,
larger allocations mapped fresh: bench.py's setting until this script); ``keep_freed_memory()`` (no
allocation mapped).  Per step: wall, user and system seconds and minor page faults, after one warm-up
step.  The settings run one after another, not interleaved: the fault counts are the result, the
times only show where they go.

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/allocator_faults.py \\
        --json experiments/compressed_encoders/results/allocator_faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

SETTINGS = ("glibc defaults", "heap below 32 MiB, larger mapped", "no allocation mapped")


def worker(variant: str, setting: str, steps: int, batch: int) -> None:
    import resource
    import time
    import warnings

    import bench

    from structlayers.lab.bench.allocator import keep_freed_memory

    warnings.filterwarnings("ignore")
    if setting != SETTINGS[0]:
        keep_freed_memory(map_large=setting == SETTINGS[1])
    _, step = bench.training_step("experiments/neighbor_loc/seed004_gamma_log16.yaml", variant, batch)
    rows = []
    for _ in range(steps + 1):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        step()
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        rows.append({"wall_s": wall, "user_s": after.ru_utime - before.ru_utime,
                     "system_s": after.ru_stime - before.ru_stime, "minor_faults": after.ru_minflt - before.ru_minflt})
    print(json.dumps(rows[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["irrep-wise + dense mixing + CG", "dense + CG"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.steps, args.batch)
        return
    import bench

    load_before = bench.load_average()
    results = {}
    for variant in args.variants:
        for setting in SETTINGS:
            run = subprocess.run([sys.executable, __file__, "--worker", variant, setting, "--steps", str(args.steps),
                                  "--batch", str(args.batch)], capture_output=True, text=True, check=True,
                                 env=dict(os.environ), cwd=Path(__file__).resolve().parents[2])
            steps = json.loads(run.stdout.strip().splitlines()[-1])
            summary = {k: statistics.median(s[k] for s in steps) for k in steps[0]}
            results.setdefault(variant, {})[setting] = {"steps": steps, "median": summary}
            print(f"{variant}, {setting}: step {summary['wall_s']:.2f} s (user {summary['user_s']:.2f}, system "
                  f"{summary['system_s']:.2f}), {summary['minor_faults']:.0f} minor faults (median of "
                  f"{args.steps})", flush=True)
    bench.write_micro("allocator_faults.py", args.json, load_before, batch=args.batch, steps=args.steps,
                      results=results, note="per-step medians after one warm-up step; settings run one after "
                                            "another in fresh processes, not interleaved")


if __name__ == "__main__":
    main()
