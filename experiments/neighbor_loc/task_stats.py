"""Statistics of the neighbor-location task as the data pipeline makes it, before and after the
corrections: the old task (origins with >= 20 other heavy atoms within 5 A, unweighted; no padding;
view B unchecked) against the new one (>= 25 heavy atoms within 5 A, the origin included, occupancy
weighted; 2 A padding; view B held to the same criterion).

For each task and image setting it draws examples from all structures and records how many origins
there are, how often view B is empty or sparse (atom centres inside its cube), how often the two
views overlap (their cubes share volume, exactly, B's rotational noise included; and, translation
only, how often B's centre lies less than one image length from A's along the label direction), how
B was drawn, and how much of the label view A alone gives away: the accuracy of an "A-only oracle"
that knows which of the directions lead to dense structure (from the origin and orientation, without
B's noise) and guesses uniformly among them.

    PYTHONPATH=src python experiments/neighbor_loc/task_stats.py \\
        --structures ../shared/data/pdb --out experiments/neighbor_loc/results/task_stats.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from atompaint.origins import AtomDensity, OriginIndex, OriginParams, build_index, find_structures
from atompaint.structures import load
from atompaint.tasks.neighbor_loc import NeighborLocConfig, NeighborLocDataset, view_atom_counts, views_overlap
from atompaint.voxelize import ImageParams

# Both recorded with the crystallization additives kept, as the loader did then (results/task_stats.json).
OLD_ORIGINS = OriginParams(min_atoms=21, occupancy_weighted=False, drop_non_loi=False)  # >= 20 others + the origin
NEW_ORIGINS = OriginParams(drop_non_loi=False)

#: Image settings: the library default (21^3 at 0.75 A, noise 2 A / 20 deg) and the CPU sanity runs
#: (experiments/neighbor_loc/sanity_*.yaml: 9^3 at 1.6 A, noise 1 A / 10 deg).
SETTINGS = {
    "default_21x0.75A": {"image": ImageParams(), "max_translation_A": 2.0, "max_rotation_deg": 20.0},
    "sanity_9x1.6A": {"image": ImageParams(length_voxels=9, resolution_A=1.6), "max_translation_A": 1.0,
                      "max_rotation_deg": 10.0},
}
TASKS = {
    "old": {"origins": OLD_ORIGINS, "padding_A": 0.0, "b_density_check": False},
    "new": {"origins": NEW_ORIGINS, "padding_A": NeighborLocConfig().padding_A, "b_density_check": True},
}


def task_statistics(index_path: Path, config: NeighborLocConfig, n: int, seed: int) -> dict:
    dataset = NeighborLocDataset(index_path, config, length=n, seed=seed)
    paths = {s.id: s.path for s in dataset.index.structures()}
    new_density: dict[int, AtomDensity] = {}
    atoms_a, atoms_b, overlap, short, b_dense, draws, fallback, oracle, n_dense = ([] for _ in range(9))
    for key in range(n):
        ex = dataset.example(key)
        v = ex.views
        if ex.structure_id not in new_density:  # the new criterion, to judge both tasks' B views alike
            atoms = load(paths[ex.structure_id], **dataset.index.load_options)
            new_density[ex.structure_id] = AtomDensity(atoms, NEW_ORIGINS)
        density = new_density[ex.structure_id]
        a, b = view_atom_counts(dataset, key)
        atoms_a.append(a)
        atoms_b.append(b)
        overlap.append(views_overlap(v, config.image.length_A))
        along = (v.center_b - v.center_a) @ (dataset.directions[v.label] @ v.rotation_a)
        short.append(along < config.image.length_A)
        b_dense.append(bool(density.is_dense(density.count(v.center_b))))
        draws.append(ex.b_draws)
        fallback.append(ex.b_fallback)
        # Directions whose noise-free centre is dense, seen from A's origin and orientation.
        centers = v.center_a + config.neighbor_distance_A * dataset.directions @ v.rotation_a
        dense = density.is_dense(density.counts(centers))
        oracle.append(dense[v.label] / dense.sum() if dense.any() else 1 / len(dense))
        n_dense.append(int(dense.sum()))
    atoms_a, atoms_b = np.array(atoms_a), np.array(atoms_b)
    return {
        "examples": n,
        "b_empty": float(np.mean(atoms_b == 0)),
        "b_under_25_atoms": float(np.mean(atoms_b < 25)),
        "b_under_100_atoms": float(np.mean(atoms_b < 100)),
        "a_atoms_median": float(np.median(atoms_a)),
        "b_atoms_median": float(np.median(atoms_b)),
        "overlapping_pairs": float(np.mean(overlap)),
        "offset_along_direction_below_length": float(np.mean(short)),
        "b_fails_new_criterion": float(1 - np.mean(b_dense)),
        "b_redrawn": float(np.mean(np.array(draws) > 1)),
        "b_draws_mean": float(np.mean(draws)),
        "b_fallback": float(np.mean(fallback)),
        "dense_directions_mean": float(np.mean(n_dense)),
        "a_only_oracle_accuracy": float(np.mean(oracle)),
        "chance": 1 / len(dataset.directions),
    }


def stats_parser(doc: str | None, examples: int, seed: int) -> argparse.ArgumentParser:
    """The arguments every statistics script of this folder takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=Path, default=Path("../shared/data/pdb"))
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--examples", type=int, default=examples, help="examples drawn per cell of the report")
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--work-dir", type=Path, default=None, help="where the origin indexes go (default: a temp dir)")
    return parser


def write_report(report: dict, out: Path, start: float) -> None:
    """Write ``report`` (with the seconds since ``start``) as JSON to ``out``."""
    report["seconds"] = round(time.perf_counter() - start, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = stats_parser(__doc__, examples=2000, seed=0).parse_args(argv)

    start = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="task_stats_"))
    paths = find_structures(args.structures)
    report: dict = {"structures": len(paths), "examples_per_cell": args.examples, "seed": args.seed, "tasks": {}}
    for task, spec in TASKS.items():
        index_path = work / f"origins_{task}.db"
        build_index(paths, index_path, spec["origins"])
        index = OriginIndex(index_path)
        infos = index.structures()
        entry = {
            "origins": asdict(spec["origins"]),
            "padding_A": spec["padding_A"],
            "b_density_check": spec["b_density_check"],
            "origin_count": int(sum(s.n_origins for s in infos)),
            "structures_with_origins": int(sum(s.n_origins > 0 for s in infos)),
            "settings": {},
        }
        for setting, values in SETTINGS.items():
            config = NeighborLocConfig(padding_A=spec["padding_A"], b_density_check=spec["b_density_check"],
                                       cache_structures=len(paths), **values)
            entry["settings"][setting] = task_statistics(index_path, config, args.examples, args.seed)
            print(f"{task} {setting}: {json.dumps(entry['settings'][setting])}", file=sys.stderr)
        report["tasks"][task] = entry
    write_report(report, args.out, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
