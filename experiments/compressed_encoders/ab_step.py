"""Before/after of an execution change, measured in one run: the same training step (forward +
backward of the neighbor-location model at batch 4) of one variant, built from the code of an
earlier commit (``--before``) and from the working tree (or each commit of ``--after``), optionally
also under ``torch.compile``, each in its own worker process, steps interleaved in a seeded random
order per round, paired ratios with their spread, the machine and the load (the noise rule of
``bench.py``).

    env OMP_NUM_THREADS=1 python experiments/compressed_encoders/ab_step.py --before e7c4a11 \\
        --variant "irrep-wise + dense mixing + CG" --repeats 7 --compile \\
        --json experiments/compressed_encoders/results/ab_step_irrep_dense.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from structlayers.lab.bench.allocator import keep_freed_memory_env

ROOT = Path(__file__).resolve().parents[2]


def worker(args: argparse.Namespace) -> None:
    """Build the model, then answer every ``step`` line on stdin with one step's wall-clock and CPU
    seconds (the process's CPU time, which time-sharing with other jobs does not inflate)."""
    import warnings

    import torch

    from atompaint.encoders import build_encoder
    from atompaint.tasks.neighbor_loc.model import NeighborLocClassifier
    from atompaint.training.config import load_config

    warnings.filterwarnings("ignore")
    config = load_config(args.config)
    changes = json.loads(args.changes)
    encoder_config = replace(config.encoder, **changes)
    torch.manual_seed(0)
    model = NeighborLocClassifier(build_encoder(encoder_config), config.data.num_classes, config.head).train()
    shape = (encoder_config.in_channels, *3 * [encoder_config.input_size])
    g = torch.Generator().manual_seed(0)
    views = tuple(torch.rand(args.batch, *shape, generator=g) for _ in range(2))
    target = torch.zeros(args.batch, dtype=torch.long)
    forward = torch.compile(model, dynamic=False) if args.compile else model

    def step() -> dict[str, float]:
        model.zero_grad(set_to_none=True)
        start, cpu = time.perf_counter(), time.process_time()
        torch.nn.functional.cross_entropy(forward(*views), target).backward()
        return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}

    warmup = step()["seconds"]  # includes compilation under --compile
    print(json.dumps({"ready": True, "warmup_seconds": warmup}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        print(json.dumps(step()), flush=True)


def start(name: str, src: Path, args: argparse.Namespace, compile_: bool) -> subprocess.Popen:
    # bench.py's allocator settings, the same in every worker whatever code it runs.
    env = dict(os.environ, PYTHONPATH=str(src), **keep_freed_memory_env())
    if src != ROOT / "src":  # an archived commit builds its own C++ kernels, beside its sources
        env["TORCH_EXTENSIONS_DIR"] = str(src.parent / "torch_extensions")
    command = [sys.executable, __file__, "--worker", "--config", args.config, "--changes", args.changes,
               "--batch", str(args.batch)] + (["--compile"] if compile_ else [])
    proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    ready = json.loads(proc.stdout.readline())
    print(f"{name}: ready, warm-up step {ready['warmup_seconds']:.2f} s", flush=True)
    proc.warmup = ready["warmup_seconds"]
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--changes", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="experiments/neighbor_loc/seed004_gamma_log16.yaml")
    parser.add_argument("--variant", default="irrep-wise + dense mixing + CG")
    parser.add_argument("--before", default=None, help="commit whose src/ is the 'before' code")
    parser.add_argument("--after", nargs="*", default=[],
                        help="commits whose src/ are 'after' arms, one each (default: the working tree)")
    parser.add_argument("--compile", action="store_true", help="also the working tree under torch.compile")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="the band-limit-1 sanity shape of bench.py")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    import bench

    args.changes = json.dumps({**(bench.QUICK if args.quick else {}), **bench.VARIANTS[args.variant]})
    load_before = bench.load_average()
    arms: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory(prefix="ab_step_") as tmp:

        def source(commit: str | None, name: str) -> Path:
            if commit is None:
                return ROOT / "src"
            archive = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, check=True,
                                     capture_output=True).stdout
            (Path(tmp) / name).mkdir()
            subprocess.run(["tar", "-x", "-C", Path(tmp) / name], input=archive, check=True)
            return Path(tmp) / name / "src"

        if args.before:
            # Recorded as the commit it names now, not as a name like HEAD that moves.
            args.before = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, check=True,
                                         capture_output=True, text=True).stdout.strip()
            arms["before"] = start("before", source(args.before, "before"), args, False)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        for commit in args.after or [None]:
            name = f"after {commit}" if commit else "after"
            after = source(commit, name.replace(" ", "_"))
            arms[name] = start(name, after, args, False)
        if args.compile:
            arms[f"{name} + torch.compile"] = start(f"{name} + torch.compile", after, args, True)
        times: dict[str, list[float]] = {k: [] for k in arms}
        cpu_times: dict[str, list[float]] = {k: [] for k in arms}
        rng, during = random.Random(0), []
        for r in range(args.repeats):
            order = list(arms)
            rng.shuffle(order)
            for name in order:
                arms[name].stdin.write("step\n")
                arms[name].stdin.flush()
                answer = json.loads(arms[name].stdout.readline())
                times[name].append(answer["seconds"])
                cpu_times[name].append(answer["cpu_seconds"])
            during.append(bench.load_average())
            print(f"round {r}: " + "  ".join(f"{k} {times[k][-1]:.3f} s (CPU {cpu_times[k][-1]:.3f} s)"
                                             for k in arms), flush=True)
        warmups = {k: p.warmup for k, p in arms.items()}
        for proc in arms.values():
            proc.stdin.close()
            proc.wait()
    reference = "before" if "before" in arms else next(iter(arms))
    result = {
        "command": "python experiments/compressed_encoders/ab_step.py " + " ".join(sys.argv[1:]),
        "variant": args.variant, "changes": json.loads(args.changes), "before_commit": args.before,
        "after": args.after or f"working tree when its worker started (HEAD {head})",
        "batch": args.batch, "repeats": args.repeats,
        "machine": {**bench.machine(), "worker_allocator_env": keep_freed_memory_env()},
        "load_average": {"before": load_before, "during": during, "after": bench.load_average()},
        "step_seconds": times, "warmup_seconds": warmups,
        "speedup_vs_" + reference: {k: bench.paired_ratio(times[reference], v) for k, v in times.items()},
        "speedup_between_consecutive_arms": {f"{a} -> {b}": bench.paired_ratio(times[a], times[b])
                                             for a, b in zip(times, list(times)[1:])},
        "cpu_step_seconds": cpu_times,
        "cpu_speedup_vs_" + reference: {k: bench.paired_ratio(cpu_times[reference], v) for k, v in cpu_times.items()},
        "cpu_speedup_between_consecutive_arms": {f"{a} -> {b}": bench.paired_ratio(cpu_times[a], cpu_times[b])
                                                 for a, b in zip(cpu_times, list(cpu_times)[1:])},
    }
    limit = result["machine"]["torch_threads"] + bench.NOISE_RULE["max_load_above_threads"]
    reasons = [f"{args.repeats} paired steps < {bench.NOISE_RULE['min_repeats']}"] * (
        args.repeats < bench.NOISE_RULE["min_repeats"])
    worst = max([load_before[0], result["load_average"]["after"][0], *(d[0] for d in during)])
    if worst > limit:
        reasons.append(f"1-minute load up to {worst:.2f} > {limit:.2f}")
    for k, ratio in result["speedup_vs_" + reference].items():
        if ratio["iqr_over_median"] > bench.NOISE_RULE["max_ratio_iqr_over_median"]:
            reasons.append(f"{k} vs {reference}: paired-ratio IQR {100 * ratio['iqr_over_median']:.0f}% of median")
    result["noise_reasons"], result["noisy"] = reasons, bool(reasons)
    for k, ratio in result["speedup_vs_" + reference].items():
        cpu = result["cpu_speedup_vs_" + reference][k]
        print(f"{k:24s} median step {sorted(times[k])[len(times[k]) // 2]:.3f} s  vs {reference} "
              f"{ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]; CPU time "
              f"{sorted(cpu_times[k])[len(cpu_times[k]) // 2]:.3f} s, {cpu['median']:.2f}x "
              f"[{cpu['min']:.2f}-{cpu['max']:.2f}]")
    print("NOISY: " + "; ".join(reasons) if reasons else "clean by the noise rule")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
