"""``atompaint voxelize``: one image of a structure, saved as .npz and optionally drawn as slices."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from structlayers import clikit

NAME = "voxelize"
HELP = "Voxelize a structure around a centre into a (C, L, L, L) image (.npz), optionally drawing its slices."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from atompaint.voxelize import ImageParams

    parser.add_argument("structure", help="mmCIF/PDB file, optionally gzipped")
    parser.add_argument("--center", default=None, help="X,Y,Z in A (default: the centroid of the atoms)")
    parser.add_argument("--rotate", action="store_true", help="apply a uniform random rotation about the centre")
    parser.add_argument("--seed", type=int, default=0, help="seed of --rotate (default 0)")
    clikit.add_config_arguments(
        parser, ImageParams, only=("length_voxels", "resolution_A", "radius_A", "fill"),
        flags={"length_voxels": "--length", "resolution_A": "--resolution", "radius_A": "--radius"},
        help={"length_voxels": "voxels per side", "resolution_A": "voxel size in A", "radius_A": "atom radius in A",
              "fill": "voxel value"},
    )
    default_channels = format_channels(ImageParams().channels)
    parser.add_argument(
        "--channels", default=default_channels,
        help=f"element groups, ';' between channels, ',' within (default {default_channels!r})",
    )
    parser.add_argument("--keep-hydrogens", action="store_true", help="image hydrogens too (dropped by default)")
    parser.add_argument("--strict", action="store_true",
                        help="an empty image (no atom of any channel in view) is an error, not a warning")
    clikit.add_out(parser, "output .npz (keys: image, center_A, resolution_A, rotation, channels)", required=True)
    clikit.add_plot(parser, "also draw every z-slice of every channel into this image (PNG, SVG or PDF)", old="--png")


def format_channels(channels: tuple[tuple[str, ...], ...]) -> str:
    return ";".join(",".join(group) for group in channels)


def parse_channels(text: str) -> tuple[tuple[str, ...], ...]:
    """``"C;N,O;*"`` -> ``(("C",), ("N", "O"), ("*",))``; every entry an element symbol or ``*``."""
    from atompaint.structures import is_element

    channels = tuple(tuple(e.strip() for e in group.split(",") if e.strip()) for group in text.split(";"))
    unknown = sorted({e for group in channels for e in group if e != "*" and not is_element(e)})
    if unknown:
        raise ValueError(f"--channels {text!r}: {', '.join(map(repr, unknown))} not an element symbol "
                         "(channels are element symbols, ',' within a channel, ';' between, '*' for the rest)")
    return channels


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

    from atompaint.structures import load
    from atompaint.voxelize import ImageParams, random_rotation, voxelize
    from atompaint.voxelize.core import check_render_memory
    from structlayers.utils.memory import check_allocation

    params = clikit.config_from_args(ImageParams, args, channels=parse_channels(args.channels))
    center_given = parse_center(args.center) if args.center is not None else None
    out = clikit.check_output_path(args.out, "image")
    plot = clikit.check_output_path(args.plot, "--plot", clikit.PLOT_SUFFIXES)
    # The image is computed in float64 and returned in its dtype: both are alive at the end.
    voxels = params.num_channels * params.length_voxels**3
    check_allocation(voxels * (8 + np.dtype(params.dtype).itemsize),
                     f"a {params.num_channels} x {params.length_voxels}^3 image (--length {params.length_voxels})")
    check_render_memory(params)
    atoms = load(args.structure, drop_hydrogens=not args.keep_hydrogens, altloc="first")
    center = np.array(center_given if center_given else atoms.coords.mean(axis=0), dtype=np.float64)
    rotation = random_rotation(np.random.default_rng(args.seed)) if args.rotate else np.eye(3)
    image = voxelize(atoms, center, params, rotation=rotation)
    if not image.any():
        message = f"the image is empty: {why_empty(atoms, params, center, centroid=center_given is None)}"
        if args.strict:
            raise ValueError(message)
        print(f"atompaint voxelize: warning: {message}", file=sys.stderr)

    np.savez_compressed(
        out,
        image=image,
        center_A=center,
        resolution_A=params.resolution_A,
        rotation=rotation,
        channels=np.array([",".join(c) for c in params.channels]),
    )
    print(f"{out}: image {image.shape}, {int((image.sum(axis=0) > 0).sum())} non-empty voxels, total {image.sum():.2f}")
    if plot:
        title = f"{Path(args.structure).name} @ {args.center or 'centroid'}"
        draw_slices(image, [",".join(c) for c in params.channels], plot, title=title)
        print(f"{plot}: slices drawn")
    return 0


def why_empty(atoms, params, center, centroid: bool) -> str:
    """Why no atom of ``atoms`` reaches an image of ``params`` at ``center``."""
    import numpy as np

    from atompaint.voxelize import channel_of_atoms

    rows, _ = channel_of_atoms(atoms.element, params.channels)
    if len(rows) == 0:
        return (f"no atom belongs to a channel ({format_channels(params.channels)}); "
                f"the structure's elements are {','.join(sorted(set(atoms.element.tolist())))}")
    distance = np.linalg.norm(atoms.coords[rows].astype(np.float64) - center, axis=1)
    reach = np.sqrt(3) * params.length_A / 2 + params.max_radius_A
    text = (f"the nearest imaged atom is {distance.min():.1f} A from the centre "
            f"({', '.join(f'{c:.1f}' for c in center)}), and the image reaches {reach:.1f} A")
    if centroid:
        text += ("; the centre is the centroid of all atoms, which atoms far from the rest pull into empty space: "
                 "give --center X,Y,Z")
    return text


def draw_slices(image, channel_names: list[str], path: str | Path, title: str = "") -> None:
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
