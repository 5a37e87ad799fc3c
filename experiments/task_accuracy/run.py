"""Driver of the task-accuracy study: trains and evaluates every run, resumably.

Each job (a training or an evaluation) is skipped when its result file exists, so the driver can
be stopped and rerun at any time.  Jobs run in priority order (all variants of a seed before the
next seed, residue-env before the neighbour task, equal epochs before equal wall-clock before
compute-matched) under the machine-wide lock ``/tmp/heavy.lock`` (flock(2), the same lock as the
``flock`` command; ``--lock`` names another), held for at most ``--hold`` seconds of jobs before it
is released for others.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/task_accuracy/run.py [--stages epochs wallclock matched]

Regimes (result folders ``results/<task>/<regime>/``):

- ``epochs``: the sanity configs' budget (residue-env 6 epochs of 152 batches, neighbour 4 of 32).
- ``wallclock``: each variant gets the dense variant's wall-clock, from the step times measured in
  one interleaved run (``results/step_time.json``): total batches = dense batches x (data + dense
  model step) / (data + variant model step), spread over the same number of epochs by
  ``trainer.limit_train_batches`` (more epochs when a variant gets more than the full budget).
  The dense variant's run is its ``epochs`` run.
- ``matched``: per compressed encoder form, the wider encoder of ``results/step_time_matched.json``
  with the fewest encoder FLOPs at or above the dense encoder's, at the dense variant's budget in
  batches (choice recorded in ``results/<task>/matched_choice.json``).
- ``long``: residue-env, every encoder with the dense head, trained for ``LONG_EPOCHS`` epochs (the
  equal-epochs runs are still improving when they stop), with a shuffled-label model of the same
  budget as their control.

Residue-env runs are scored with ``atompaint evaluate`` on the test structures from the best
(validation loss) checkpoint, with the shuffled-label model (dense variant, seed 0, trained by this
driver) as a control; neighbour runs on 1,024 validation pairs from the last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import DENSE, RESULTS, ROOT, RUNS, SEEDS, TASKS, VARIANTS, overrides, set_args

ATOMPAINT = str(ROOT / ".venv/bin/atompaint")
LOCK = "/tmp/heavy.lock"
SHUFFLED = "shuffled-labels"
NEIGHBOR_EVAL_PAIRS = 1024
LONG_EPOCHS = 8


@dataclass
class Job:
    task: str
    regime: str
    run: str  # run name (also the results file stem)
    sets: dict[str, str]
    after: list[str] = field(default_factory=list)

    @property
    def results(self) -> Path:
        return RESULTS / self.task / self.regime

    @property
    def run_dir(self) -> Path:
        return RUNS / self.task / self.regime / self.run

    @property
    def summary(self) -> Path:
        return self.results / f"{self.run}.summary.json"

    @property
    def evaluation(self) -> Path:
        return self.results / f"{self.run}.eval.json"


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def provenance() -> dict:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    diff = subprocess.run(["git", "diff", "--", "src"], cwd=ROOT, capture_output=True, text=True).stdout
    return {"git_head": head, "src_uncommitted_diff_sha1": hashlib.sha1(diff.encode()).hexdigest() if diff else None,
            "load_average": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def train(job: Job) -> None:
    job.results.mkdir(parents=True, exist_ok=True)
    command = [ATOMPAINT, "train", "--config", str(TASKS[job.task]["config"].relative_to(ROOT)),
               "--out-dir", str(job.run_dir.parent.relative_to(ROOT)), "--no-progress", "--overwrite",
               *set_args({**job.sets, "name": job.run})]
    log("train " + " ".join(command[1:]))
    before = provenance()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((job.run_dir / "summary.json").read_text())
    summary["study"] = {"command": " ".join(["atompaint", *command[1:]]), "sets": job.sets, "regime": job.regime,
                        "provenance_before": before, "provenance_after": provenance()}
    shutil.copy(job.run_dir / "csv/version_0/metrics.csv", job.results / f"{job.run}.metrics.csv")
    job.summary.write_text(json.dumps(summary, indent=2) + "\n")


def evaluate(job: Job, shuffled: Path | None) -> None:
    summary = json.loads(job.summary.read_text())
    if job.task == "residue-env":
        checkpoint = summary["best_checkpoint"] or summary["last_checkpoint"]
        extra = ["--split", "test"] + (["--shuffled-labels", str(shuffled)] if shuffled else [])
    else:
        checkpoint = summary["last_checkpoint"]
        extra = ["--set", f"data.val_size={NEIGHBOR_EVAL_PAIRS}"]
    command = [ATOMPAINT, "evaluate", checkpoint, *extra, "--json", str(job.evaluation.relative_to(ROOT))]
    log("evaluate " + " ".join(command[1:]))
    text = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    job.evaluation.with_suffix(".txt").write_text(text)
    report = json.loads(job.evaluation.read_text())
    report["study"] = {"command": " ".join(["atompaint", *command[1:]]), "provenance": provenance()}
    job.evaluation.write_text(json.dumps(report, indent=2) + "\n")


def step_times(name: str = "step_time.json") -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def budget_sets(task: str, ratio: float) -> dict[str, str]:
    """Epochs and batches per epoch that give ``ratio`` x the sanity budget in batches."""
    epochs, per_epoch = TASKS[task]["epochs"], TASKS[task]["steps_per_epoch"]
    total = round(epochs * per_epoch * ratio)
    if total <= epochs * per_epoch:
        return {"trainer.max_epochs": str(epochs), "trainer.limit_train_batches": str(round(total / epochs))}
    more = math.ceil(total / per_epoch)
    return {"trainer.max_epochs": str(more), "trainer.limit_train_batches": str(round(total / more))}


def matched_choice(task: str, rows: dict) -> list[str]:
    """Per compressed encoder form, the wider variant (names not in VARIANTS) that matches the dense
    encoder's compute: the one with the fewest encoder FLOPs per image at or above the dense
    encoder's.  Matching by step time is not possible on this machine: the narrowest compressed
    encoders are already slower per step than the dense one.  Recorded in
    results/<task>/matched_choice.json."""
    dense = rows[DENSE]["encoder_flops"]
    chosen: dict[str, tuple[str, int]] = {}
    for name, row in rows.items():
        if name in VARIANTS or row["encoder_flops"] < dense:
            continue
        form = name.split("-")[0]
        if form not in chosen or row["encoder_flops"] < chosen[form][1]:
            chosen[form] = (name, row["encoder_flops"])
    names = [name for name, _ in chosen.values()]
    record = {"task": task, "rule": "per form, the wider variant with the fewest encoder FLOPs >= the dense encoder's",
              "dense_encoder_flops": dense,
              "candidates": {n: {"encoder_flops": r["encoder_flops"], "ms_step_with_data": r["ms_step_with_data"]}
                             for n, r in rows.items() if n not in VARIANTS},
              "chosen": names}
    (RESULTS / task).mkdir(parents=True, exist_ok=True)
    (RESULTS / task / "matched_choice.json").write_text(json.dumps(record, indent=2) + "\n")
    return names


#: The order jobs run in: (stage, task, seeds, variants or None for all).  The residue-env comparison
#: at equal epochs first, then one seed of every neighbour variant, the residue-env wall-clock runs of
#: the dense-head variants, the other neighbour seeds, the ACDC-head wall-clock runs, compute-matched,
#: the longer residue-env runs, then the neighbour task's wall-clock and compute-matched runs.
PLAN: list[tuple[str, str, tuple[int, ...], tuple[str, ...] | None]] = [
    ("epochs", "residue-env", SEEDS, None),
    ("epochs", "neighbor-loc", SEEDS[:1], None),
    ("wallclock", "residue-env", SEEDS, ("field-enc_dense-head", "irrep-enc_dense-head")),
    ("epochs", "neighbor-loc", SEEDS[1:], None),
    ("wallclock", "residue-env", SEEDS, None),
    ("matched", "residue-env", SEEDS, None),
    ("long", "residue-env", SEEDS, tuple(v for v in VARIANTS if v.endswith("_dense-head"))),
    ("wallclock", "neighbor-loc", SEEDS, None),
    ("matched", "neighbor-loc", SEEDS, None),
]


def jobs(stages: list[str], tasks: list[str]) -> list[Job]:
    out: list[Job] = []
    timing, matched = step_times(), step_times("step_time_matched.json")
    for stage, task, seeds, only in PLAN:
        if stage not in stages or task not in tasks:
            continue
        for seed in seeds:
            names = [v for v in VARIANTS if only is None or v in only]
            if stage == "epochs":
                if seed == SEEDS[0] and task == "residue-env":
                    out.append(Job(task, "epochs", SHUFFLED, overrides(task, DENSE, seed, {
                        "data.shuffle_labels": "true"})))
                out += [Job(task, "epochs", f"{v}_s{seed}", overrides(task, v, seed)) for v in names]
            elif stage == "long":
                sets = {"trainer.max_epochs": str(LONG_EPOCHS)}
                if seed == SEEDS[0]:
                    out.append(Job(task, "long", SHUFFLED, overrides(task, DENSE, seed, {
                        **sets, "data.shuffle_labels": "true"})))
                out += [Job(task, "long", f"{v}_s{seed}", overrides(task, v, seed, sets)) for v in names]
            elif stage == "wallclock" and timing and task in timing["tasks"]:
                rows = timing["tasks"][task]["variants"]
                for v in names:
                    if v != DENSE and v in rows:
                        sets = budget_sets(task, rows[v]["wallclock_ratio_vs_dense"])
                        out.append(Job(task, "wallclock", f"{v}_s{seed}", overrides(task, v, seed, sets)))
            elif stage == "matched" and matched and task in matched["tasks"]:
                rows = matched["tasks"][task]["variants"]
                for name in matched_choice(task, rows):
                    out.append(Job(task, "matched", f"{name}_s{seed}",
                                   overrides(task, DENSE, seed, rows[name]["overrides"])))
    seen: set[tuple[str, str, str]] = set()
    return [j for j in out if (j.task, j.regime, j.run) not in seen and not seen.add((j.task, j.regime, j.run))]


@contextlib.contextmanager
def heavy_lock(path: str = LOCK):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pending(job: Job) -> bool:
    return not job.summary.exists() or not job.evaluation.exists()


def do(job: Job) -> None:
    """Train and evaluate ``job``; residue-env runs are scored with the shuffled-label model of their
    own regime where it has one (``long``), else the equal-epochs one."""
    own = RESULTS / job.task / job.regime / f"{SHUFFLED}.summary.json"
    shuffled_summary = own if own.exists() else RESULTS / "residue-env/epochs" / f"{SHUFFLED}.summary.json"
    if not job.summary.exists():
        train(job)
    if job.run == SHUFFLED:
        return
    if not job.evaluation.exists():
        shuffled = None
        if job.task == "residue-env" and shuffled_summary.exists():
            shuffled = Path(json.loads(shuffled_summary.read_text())["last_checkpoint"])
        evaluate(job, shuffled)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=["epochs", "wallclock"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--hold", type=float, default=240.0, help="seconds of jobs per hold of the lock")
    parser.add_argument("--stop-at", default=None, help="UTC HH:MM after which no job is started")
    parser.add_argument("--lock", default=LOCK, help="the lock file the jobs are run under")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    todo = [j for j in jobs(args.stages, args.tasks) if j.run == SHUFFLED and not j.summary.exists() or
            j.run != SHUFFLED and pending(j)]
    if args.dry_run:
        for job in todo:
            print(job.task, job.regime, job.run, job.sets)
        return 0
    while todo:
        if args.stop_at and time.strftime("%H:%M", time.gmtime()) >= args.stop_at:
            log(f"stop time {args.stop_at} reached; {len(todo)} jobs left")
            return 0
        with heavy_lock(args.lock):
            start = time.time()
            while todo and time.time() - start < args.hold:
                job = todo.pop(0)
                try:
                    do(job)
                except subprocess.CalledProcessError as err:
                    log(f"FAILED {job.task} {job.regime} {job.run}: {err}")
                    (job.results / f"{job.run}.failed.txt").write_text(f"{err}\n{getattr(err, 'stderr', '')}\n")
        time.sleep(3)
    log("all jobs done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
