"""``atompaint index``: build (or resume) the origin index of a directory of structures."""

from __future__ import annotations

import argparse
import sys
import warnings

NAME = "index"
HELP = "Find the origins (view centres) of every structure in a directory and store them in an SQLite index."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("structure_dir", help="directory searched recursively for *.cif/*.pdb[.gz] files")
    parser.add_argument("--out", required=True, help="index file to create or resume (e.g. origins.db)")
    parser.add_argument("--radius", type=float, default=5.0, help="neighbour-count radius in A (default 5)")
    parser.add_argument(
        "--min-neighbors", type=int, default=20, help="heavy atoms required within --radius (default 20)"
    )
    parser.add_argument("--elements", default=None, help="comma-separated elements allowed as origins (default all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from atompaint.origins import OriginParams, build_index, find_structures

    params = OriginParams(
        radius_A=args.radius,
        min_neighbors=args.min_neighbors,
        elements=tuple(e.strip() for e in args.elements.split(",")) if args.elements else None,
    )
    paths = find_structures(args.structure_dir)
    if not paths:
        raise ValueError(f"no structure files (*.cif, *.pdb, *.ent, *.bcif, optionally .gz) in {args.structure_dir}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = build_index(paths, args.out, params, progress=not args.no_progress)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(
        f"{args.out}: added {report.added}, already indexed {report.skipped}, unreadable {len(report.failed)}; "
        f"{report.n_structures} structures, {report.n_origins} origins"
    )
    return 0
