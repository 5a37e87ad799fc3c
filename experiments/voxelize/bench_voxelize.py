"""Images per second: atompaint.voxelize vs macromol_voxelize, same atoms, grid, radii, in one run.

The structure is ~20k heavy atoms: real chains from the shared PDB directory, each centred and placed
on a 40 A lattice.  Image centres are random heavy atoms (as origins are).  Both libraries get their
per-structure preprocessing done once, outside the timed loop: ours a KD-tree (:class:`PreparedAtoms`),
macromol_voxelize a polars frame with ``radius_A`` and ``channels`` columns.  The numba kernel is compiled
(or loaded from its on-disk cache) before timing starts.  Timings alternate between
the methods block by block (32 images each) over several rounds; the table gives each method's median
rate and its median per-block ratio to macromol_voxelize, which limits the effect of other processes
sharing the CPUs.

    python experiments/voxelize/bench_voxelize.py [--pdb-dir /work/shared/data/pdb] [--images 160] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from atompaint.structures import AtomTable, load
from atompaint.voxelize import ImageParams, PreparedAtoms, random_rotation

CHANNELS = [["C"], ["N"], ["O"], ["S", "SE"], ["*"]]


def big_structure(pdb_dir: Path, min_atoms: int) -> AtomTable:
    tables, total = [], 0
    paths = sorted(p for p in pdb_dir.glob("*.pdb.gz") if "_" not in p.name and "hydrogens" not in p.name)
    for i, path in enumerate(paths):
        atoms = load(path, drop_hydrogens=True, drop_waters=True, altloc="first")
        slot = np.array([i % 3, (i // 3) % 3, i // 9], dtype=np.float32) * 40.0
        moved = atoms.coords - atoms.coords.mean(axis=0) + slot
        tables.append(AtomTable(**{**atoms.columns(), "coords": moved}))
        total += len(atoms)
        if total >= min_atoms:
            break
    return AtomTable.concatenate(tables, name="bench")


def time_blocks(fns: dict, n_images: int, block: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median images/s of each method, and the median of its per-block ratio to the first method.

    The methods take turns on each block of ``block`` images (``rounds`` passes over all blocks), so each
    ratio compares timings taken a fraction of a second apart, under the same background load.
    """
    rates: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for start in range(0, n_images - block + 1, block):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn(start, start + block)
                rates[name].append(block / (time.perf_counter() - t))
    ref = np.array(next(iter(rates.values())))
    median_rate = {k: float(np.median(v)) for k, v in rates.items()}
    median_ratio = {k: float(np.median(np.array(v) / ref)) for k, v in rates.items()}
    return median_rate, median_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdb-dir", type=Path, default=Path("/work/shared/data/pdb"))
    parser.add_argument("--atoms", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--block", type=int, default=32, help="images per timed block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import macromol_voxelize as mmvox
    import polars as pl

    atoms = big_structure(args.pdb_dir, args.atoms)
    params = ImageParams(length_voxels=21, resolution_A=0.75, channels=tuple(map(tuple, CHANNELS)), radius_A=0.5)
    rng = np.random.default_rng(args.seed)
    centers = atoms.coords[rng.integers(len(atoms), size=args.images)].astype(np.float64)
    rotations = np.stack([random_rotation(rng) for _ in range(args.images)])

    prepared = PreparedAtoms(atoms, params)  # the numba kernel (warmed up by the accuracy check below)
    fallback = PreparedAtoms(atoms, params, backend="numpy")
    df = pl.DataFrame(
        {
            "x": atoms.coords[:, 0].astype(np.float64),
            "y": atoms.coords[:, 1].astype(np.float64),
            "z": atoms.coords[:, 2].astype(np.float64),
            "element": atoms.element.tolist(),
            "occupancy": atoms.occupancy.astype(np.float64),
        }
    )
    df = mmvox.set_atom_channels_by_element(mmvox.set_atom_radius_A(df, 0.5), CHANNELS)

    def reference_image(center: np.ndarray) -> np.ndarray:
        grid = mmvox.Grid(length_voxels=21, resolution_A=0.75, center_A=center)
        img_params = mmvox.ImageParams(channels=5, grid=grid, fill_algorithm=mmvox.FillAlgorithm.OverlapA3)
        return mmvox.image_from_atoms(df, img_params)[0]

    worst = max(float(np.abs(prepared.image(c) - reference_image(c)).max()) for c in centers[:20])
    worst_fallback = max(float(np.abs(fallback.image(c) - reference_image(c)).max()) for c in centers[:20])

    def batched(size: int, rotate: bool, prep: PreparedAtoms = prepared):
        def run(lo: int, hi: int) -> None:
            for i in range(lo, hi, size):
                j = min(i + size, hi)
                prep.images(centers[i:j], rotations[i:j] if rotate else None)

        return run

    fns = {
        "macromol_voxelize 0.10 (one image per call)": lambda lo, hi: [reference_image(c) for c in centers[lo:hi]],
        "atompaint, one image per call": lambda lo, hi: [prepared.image(c) for c in centers[lo:hi]],
        "atompaint, one image per call, rotated": batched(1, True),
        "atompaint, 2 views per call, rotated (dataset path)": batched(2, True),
        "atompaint, 32 images per call, rotated": batched(32, True),
        "atompaint numpy fallback (no numba), 2 views per call, rotated": batched(2, True, fallback),
    }
    rates, ratios = time_blocks(fns, args.images, args.block, args.rounds)

    print(f"structure: {len(atoms)} heavy atoms; images: 21^3 voxels, 0.75 A, 5 channels, radius 0.5 A")
    print(f"max |ours - macromol_voxelize| over 20 images: {worst:.2e} (numpy fallback: {worst_fallback:.2e})")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print()
    print(f"{args.rounds} rounds x {args.images // args.block} blocks of {args.block} images; medians over blocks")
    print()
    print("| method | images/s | vs macromol_voxelize (median per-block ratio) |")
    print("|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.0f} | {ratios[name]:.1f}x |")


if __name__ == "__main__":
    main()
