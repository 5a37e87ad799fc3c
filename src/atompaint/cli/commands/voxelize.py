"""``atompaint voxelize``: one image of a structure, saved as .npz and optionally drawn as slices."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "voxelize"
HELP = "Voxelize a structure around a centre into a (C, L, L, L) image (.npz), optionally drawing its slices."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("structure", help="mmCIF/PDB file, optionally gzipped")
    parser.add_argument("--center", default=None, help="X,Y,Z in A (default: the centroid of the atoms)")
    parser.add_argument("--rotate", action="store_true", help="apply a uniform random rotation about the centre")
    parser.add_argument("--seed", type=int, default=0, help="seed of --rotate (default 0)")
    parser.add_argument("--length", type=int, default=21, help="voxels per side (default 21)")
    parser.add_argument("--resolution", type=float, default=0.75, help="voxel size in A (default 0.75)")
    parser.add_argument("--radius", type=float, default=0.5, help="atom radius in A (default 0.5)")
    parser.add_argument(
        "--channels",
        default="C;N;O;S,SE;*",
        help="element groups, ';' between channels, ',' within (default 'C;N;O;S,SE;*')",
    )
    parser.add_argument(
        "--fill", default="overlap_A3", choices=["overlap_A3", "fraction_atom", "fraction_voxel"], help="voxel value"
    )
    parser.add_argument("--keep-hydrogens", action="store_true", help="image hydrogens too (dropped by default)")
    parser.add_argument("--out", required=True, help="output .npz (keys: image, center_A, resolution_A, rotation)")
    parser.add_argument("--png", default=None, help="also draw every z-slice of every channel into this PNG")


def parse_center(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(f"--center must be three comma-separated numbers X,Y,Z, not {text!r}")
    return values  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from atompaint.data.geometry import random_rotation
    from atompaint.structures import load
    from atompaint.voxelize import ImageParams, voxelize

    channels = tuple(tuple(e.strip() for e in group.split(",") if e.strip()) for group in args.channels.split(";"))
    params = ImageParams(
        length_voxels=args.length,
        resolution_A=args.resolution,
        channels=channels,
        radius_A=args.radius,
        fill=args.fill,
    )
    atoms = load(args.structure, drop_hydrogens=not args.keep_hydrogens, altloc="first")
    center = np.array(parse_center(args.center) if args.center else atoms.coords.mean(axis=0), dtype=np.float64)
    rotation = random_rotation(np.random.default_rng(args.seed)) if args.rotate else np.eye(3)
    image = voxelize(atoms, center, rotation=rotation, params=params)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        image=image,
        center_A=center,
        resolution_A=params.resolution_A,
        rotation=rotation,
        channels=np.array([",".join(c) for c in params.channels]),
    )
    print(f"{out}: image {image.shape}, {int((image.sum(axis=0) > 0).sum())} non-empty voxels, total {image.sum():.2f}")
    if args.png:
        draw_slices(image, [",".join(c) for c in params.channels], args.png, title=f"{Path(args.structure).name} @ {args.center or 'centroid'}")
        print(f"{args.png}: slices drawn")
    return 0


def draw_slices(image, channel_names: list[str], path: str, title: str = "") -> None:
    """One row per channel, one column per z-slice; a shared colour scale per channel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_channels, _, _, n_z = image.shape
    fig, axes = plt.subplots(n_channels, n_z, figsize=(0.9 * n_z, 0.95 * n_channels + 0.4), squeeze=False)
    for c in range(n_channels):
        vmax = float(image[c].max()) or 1.0
        for z in range(n_z):
            ax = axes[c, z]
            ax.imshow(image[c, :, :, z].T, origin="lower", cmap="viridis", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if z == 0:
                ax.set_ylabel(channel_names[c], fontsize=8)
            if c == 0:
                ax.set_title(f"z{z}", fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
