"""Merge records of one ``structlayers approx`` study run in shards of seeds into the record of the
whole study, so that a long study (a families study at 5 seeds with projection starts takes hours on
the shared machine) can run as several shorter, lock-sized commands:

    structlayers approx <the study's flags> --seeds 0 1 --json a.json
    structlayers approx <the study's flags> --seeds 2 3 4 --no-timing --json b.json
    python experiments/approx/merge_seeds.py a.json b.json --json study.json --plot study.png

Every (configuration, seed) fit depends only on its seed, so the merged runs are those the unsharded
command fits.  What the unsharded command measures once, on its first seed, comes from the shard
holding the lowest seed: the forward timings and the local dimension shown per configuration.  The
shards must agree on everything but the seeds and timing; ``--charge dimension`` records are refused
(their baselines depend on the first seed's dimension), and so are interrupted ones.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from structlayers.lab.approx.experiment import ApproxResult
from structlayers.lab.approx.plot import plot_result


def merge(shards: list[ApproxResult]) -> ApproxResult:
    shards = sorted(shards, key=lambda s: min(s.config.seed_list))
    first = shards[0]
    same = dataclasses.replace(first.config, seeds=None, timing=True)
    for shard in shards:
        if shard.interrupted:
            raise ValueError("an interrupted shard is not a record of its seeds; rerun it")
        if dataclasses.replace(shard.config, seeds=None, timing=True) != same:
            raise ValueError("the shards differ in more than their seeds and timing")
        if [j.label for j in shard.jobs] != [j.label for j in first.jobs]:
            raise ValueError("the shards planned different configurations")
    if first.config.charge == "dimension":
        raise ValueError("--charge dimension: the baselines follow the first seed's dimension; run it unsharded")
    seeds = [s for shard in shards for s in shard.config.seed_list]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"a seed appears in two shards: {sorted(seeds)}")
    dimension = {r.job: r.dimension for r in first.runs if r.seed == first.config.seed_list[0]}
    runs = [dataclasses.replace(r, dimension=dimension[r.job]) for shard in shards for r in shard.runs]
    runs.sort(key=lambda r: (r.job, seeds.index(r.seed)))
    config = dataclasses.replace(first.config, seeds=tuple(seeds))
    listed = ",".join(map(str, first.config.seed_list))
    target = first.target_description.replace(f"seeds {listed}", f"seeds {','.join(map(str, seeds))}")
    return ApproxResult(config, first.jobs, runs, first.timings, target, first.skipped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", nargs="+", type=Path, help="the shards' --json records")
    parser.add_argument("--json", type=Path, required=True, help="the merged record")
    parser.add_argument("--plot", type=Path, help="its plot (as structlayers approx --plot draws it)")
    args = parser.parse_args()
    result = merge([ApproxResult.from_json(p.read_text()) for p in args.shards])
    args.json.write_text(result.to_json())
    print(result.to_text())
    if args.plot:
        plot_result(result, args.plot)


if __name__ == "__main__":
    main()
