"""What each neighbour-task construction allows on a set of structures, and how far the zero-parameter
density rules get on it.

For every construction that the structures can satisfy it draws ``--examples`` pairs of the held-out
structures (the validation split of the sanity configs: ``val_fraction`` 0.1, split by name) and of
all structures, at the sanity image (9^3 x 1.6 A, noise 1 A / 10 deg, 2 A padding), and scores the
three density rules (:mod:`atompaint.tasks.neighbor_loc.controls`) against the construction's chance
(mean 1/|S|) with standard errors; it records the distribution of |S|, the fallbacks and the draws.
Separately it draws ``--draws`` (origin, orientation) pairs over all structures and counts, per
draw, the dense neighbour directions and whether ``balanced``, ``balanced-both`` and ``all-dense``
would accept it -- with the non-LOI residues dropped (the default) and kept.  The same is measured on
the crystals of ``--crystals`` (by default the one crystal structure at hand, PDB 5PTI from the test
data) with their symmetry mates (``OriginParams(context="crystal")``); their pairs are not held out
(one structure), which does not matter for rules without parameters.

    PYTHONPATH=src python experiments/neighbor_loc/construction_stats.py --structures ../shared/data/pdb \\
        --out experiments/neighbor_loc/results/construction_stats.json
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
from task_stats import stats_parser, write_report  # this folder, on the path when run as a script

from atompaint.origins import OriginIndex, OriginParams, OriginSampler, build_index, find_structures
from atompaint.tasks.neighbor_loc import (
    CONSTRUCTIONS,
    ConstructionError,
    NeighborLocConfig,
    NeighborLocDataset,
    binomial_se,
    chance_accuracy,
    chance_se,
    check_draw,
    score_rules,
    split_structures,
)
from atompaint.voxelize import ImageParams, random_rotation

SANITY = {"image": ImageParams(length_voxels=9, resolution_A=1.6), "max_translation_A": 1.0, "max_rotation_deg": 10.0,
          "padding_A": 2.0}


def rule_statistics(
    index_path: Path, construction: str, structure_ids: list[int] | None, n: int, seed: int, max_draws: int = 100
) -> dict:
    config = NeighborLocConfig(construction=construction, cache_structures=64, b_max_draws=max_draws, **SANITY)
    dataset = NeighborLocDataset(index_path, config, length=n, structure_ids=structure_ids, seed=seed, split="val")
    try:
        right, _, masks = score_rules(dataset)
    except ConstructionError as err:
        return {"constructed": False, "error": str(err)}
    examples = [dataset.example(k) for k in range(n)]
    chance, null_se = chance_accuracy(masks), chance_se(masks)
    rules = {}
    for name, hits in right.items():
        accuracy = float(hits.mean())
        z = (accuracy - chance) / null_se
        rules[name] = {"accuracy": accuracy, "se": binomial_se(accuracy, n), "z": z, "within_2se": bool(abs(z) <= 2)}
    return {
        "constructed": True,
        "n": n,
        "chance": chance,
        "chance_se": null_se,
        "rules": rules,
        "all_rules_within_2se": all(r["within_2se"] for r in rules.values()),
        "mask_sizes": {int(k): int(v) for k, v in sorted(Counter(masks.sum(axis=1).tolist()).items())},
        "fallback": float(np.mean([e.b_fallback for e in examples])),
        "draws_mean": float(np.mean([e.b_draws for e in examples])),
        "structures": len(dataset.sampler.structure_ids),
    }


def draw_statistics(index_path: Path, draws: int, seed: int) -> dict:
    """Per (origin, orientation) draw over all structures: dense directions and acceptance."""
    config = NeighborLocConfig(cache_structures=64, **SANITY)
    dataset = NeighborLocDataset(index_path, config, length=1, seed=seed)
    sampler = OriginSampler(dataset.index)
    rng = np.random.default_rng(seed)
    n_dense = []
    accepted = {c: 0 for c in ("balanced", "balanced-both", "all-dense")}
    a_all_dense = 0
    for _ in range(draws):
        _, structure_id, origin = sampler.sample(rng)
        rotation = random_rotation(rng)
        density = dataset.density(structure_id)
        for construction in accepted:
            check = check_draw(construction, density, origin, rotation, dataset.directions,
                               config.neighbor_distance_A)
            accepted[construction] += check.accepted
        n_dense.append(int(check.dense.sum()))
        a_all_dense += bool(check.dense.all())
    counts = Counter(n_dense)
    return {
        "draws": draws,
        "dense_directions": {k: counts.get(k, 0) for k in range(len(dataset.directions) + 1)},
        "dense_directions_max": max(n_dense),
        "accepted": accepted,
        "accepted_share": {k: v / draws for k, v in accepted.items()},
        "a_side_all_dense": a_all_dense,
    }


def main(argv: list[str] | None = None) -> int:
    parser = stats_parser(__doc__, examples=1024, seed=123)
    parser.add_argument("--draws", type=int, default=20_000, help="(origin, orientation) draws for the acceptance")
    parser.add_argument("--crystals", type=Path, nargs="*",
                        default=[Path(__file__).parents[2] / "tests" / "atompaint" / "data" / "5PTI.cif.gz"],
                        help="structures with a crystal cell, measured with their symmetry mates")
    parser.add_argument("--crystal-max-draws", type=int, default=2000,
                        help="b_max_draws on the crystals (balanced-both accepts a few percent of draws there)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="construction_stats_"))
    paths = find_structures(args.structures)
    report: dict = {"structures": len(paths), "seed": args.seed, "draw_statistics": {}, "constructions": {},
                    "image": "9^3 x 1.6 A, noise 1 A / 10 deg, 2 A padding"}
    indexes = {}
    for label, params in (("non_loi_dropped", OriginParams()), ("non_loi_kept", OriginParams(drop_non_loi=False))):
        indexes[label] = work / f"origins_{label}.db"
        build_index(paths, indexes[label], params)
        report["draw_statistics"][label] = {"origins": asdict(params),
                                            **draw_statistics(indexes[label], args.draws, args.seed)}
        print(f"{label}: {json.dumps(report['draw_statistics'][label])}", file=sys.stderr)
    index = OriginIndex(indexes["non_loi_dropped"])
    infos = [s for s in index.structures() if s.n_origins > 0]
    _, val_ids = split_structures({s.id: s.name for s in infos}, 0.1)
    report["held_out_structures"] = sorted(s.name for s in infos if s.id in val_ids)
    for construction in CONSTRUCTIONS:
        report["constructions"][construction] = {
            split: rule_statistics(indexes["non_loi_dropped"], construction, ids, args.examples, args.seed)
            for split, ids in (("held_out", val_ids), ("all", None))
        }
        print(f"{construction}: {json.dumps(report['constructions'][construction])}", file=sys.stderr)
    if args.crystals:
        crystal_dir = work / "crystals"
        crystal_dir.mkdir(exist_ok=True)
        for path in args.crystals:
            shutil.copy(path, crystal_dir)
        params = OriginParams(context="crystal")
        crystal_index = work / "origins_crystal.db"
        build_index(find_structures(crystal_dir), crystal_index, params)
        report["crystal_context"] = {
            "structures": [p.name for p in args.crystals],
            "origins": asdict(params),
            "draw_statistics": draw_statistics(crystal_index, args.draws, args.seed),
            "max_draws": args.crystal_max_draws,
            "constructions": {c: rule_statistics(crystal_index, c, None, args.examples, args.seed,
                                                 args.crystal_max_draws) for c in CONSTRUCTIONS},
        }
        print(f"crystals: {json.dumps(report['crystal_context'])}", file=sys.stderr)
    write_report(report, args.out, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
