"""``atompaint index``: build (or resume) the origin index of a directory of structures."""

from __future__ import annotations

import argparse
import sys
import warnings

from structlayers.clikit import add_config_arguments, add_no_progress, add_out, check_output_path, config_from_args

NAME = "index"
HELP = "Find the origins (view centres) of every structure in a directory and store them in an SQLite index."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from atompaint.origins import OriginParams

    parser.add_argument("structure_dir", help="directory searched recursively for *.cif/*.pdb[.gz] files")
    add_out(parser, "index file to create or resume (e.g. origins.db)", required=True)
    add_config_arguments(
        parser, OriginParams, only=("radius_A", "min_atoms", "occupancy_weighted"), flags={"radius_A": "--radius"},
        help={"radius_A": "atom-count radius in A",
              "min_atoms": "heavy non-water atoms (the origin included) required within --radius",
              "occupancy_weighted": "count each atom with its occupancy"},
    )
    parser.add_argument("--elements", default=None, help="comma-separated elements allowed as origins (default all)")
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    from atompaint.origins import OriginParams, build_index, find_structures

    elements = tuple(e.strip() for e in args.elements.split(",") if e.strip()) if args.elements else None
    params = config_from_args(OriginParams, args, elements=elements)
    check_output_path(args.out, "index")
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
