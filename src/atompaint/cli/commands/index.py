"""``atompaint index``: build (or resume) the origin index of a directory of structures."""

from __future__ import annotations

import argparse
import shlex
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
        parser, OriginParams,
        only=("radius_A", "min_atoms", "occupancy_weighted", "drop_non_loi", "context", "context_radius_A"),
        flags={"radius_A": "--radius"},
        help={"radius_A": "atom-count radius in A",
              "min_atoms": "heavy non-water atoms (the origin included) required within --radius",
              "occupancy_weighted": "count each atom with its occupancy",
              "drop_non_loi": "leave the wwPDB non-LOI residues (crystallization additives, ions) out of the "
                              "density and the origins; --no-drop-non-loi keeps them",
              "context": "measure density in the file's atoms, with its crystal symmetry mates, or in its "
                         "first biological assembly",
              "context_radius_A": "how far around the file's atoms symmetry mates are kept (A)"},
    )
    parser.add_argument("--elements", nargs="+", default=None, metavar="ELEMENT",
                        help="elements allowed as origins, e.g. C N O (or C,N,O) (default: all)")
    add_no_progress(parser)


def parse_elements(text: str | None) -> tuple[str, ...] | None:
    """``--elements C N`` or ``C,N`` (joined by commas) -> ``("C", "N")``; empty entries and
    non-elements are errors."""
    from atompaint.structures import is_element

    if text is None:
        return None
    elements = [e.strip() for e in text.split(",")]
    if any(not e for e in elements):
        raise ValueError(f"--elements {text!r} has an empty entry; give comma-separated symbols such as C,N,O")
    unknown = [e for e in elements if not is_element(e)]
    if unknown:
        raise ValueError(f"--elements: {', '.join(map(repr, unknown))} not an element symbol")
    return tuple(e.upper() for e in elements)


def run(args: argparse.Namespace) -> int:
    from atompaint.origins import BuildInterrupted, OriginParams, build_index, find_structures

    elements = parse_elements(None if args.elements is None else ",".join(args.elements))
    params = config_from_args(OriginParams, args, elements=elements)
    check_output_path(args.out, "index")
    paths = find_structures(args.structure_dir)
    if not paths:
        raise ValueError(f"no structure files (*.cif, *.pdb, *.ent, *.bcif, optionally .gz) in {args.structure_dir}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = build_index(paths, args.out, params, progress=not args.no_progress, wait=0)
        except BuildInterrupted as stop:
            _print_warnings(caught)
            r = stop.report
            print(
                f"\natompaint index: interrupted; {args.out} is consistent and holds {r.n_structures} structures "
                f"({r.added} added in this run). Run the same command again to resume:\n"
                f"  {resume_command(args, params)}",
                file=sys.stderr,
            )
            return 130
    _print_warnings(caught)
    changes = f", removed {report.removed} deleted" if report.removed else ""
    changes += f", re-indexed {report.reindexed} changed" if report.reindexed else ""
    print(
        f"{args.out}: added {report.added}, already indexed {report.skipped}, unreadable {len(report.failed)}"
        f"{changes}; {report.n_structures} structures, {report.n_origins} origins"
    )
    if report.n_origins == 0:
        print(f"warning: {args.out} holds no origins: no heavy atom has {params.min_atoms} heavy atoms within "
              f"{params.radius_A} A" + (f" among elements {','.join(params.elements)}" if params.elements else ""),
              file=sys.stderr)
    return 0


def resume_command(args: argparse.Namespace, params) -> str:
    """The command line that continues this build (same directory, index and origin parameters)."""
    words = ["atompaint", "index", str(args.structure_dir), "--out", str(args.out),
             "--radius", str(params.radius_A), "--min-atoms", str(params.min_atoms)]
    if not params.occupancy_weighted:
        words.append("--no-occupancy-weighted")
    if not params.drop_non_loi:
        words.append("--no-drop-non-loi")
    if params.context != "file":
        words += ["--context", params.context, "--context-radius-A", str(params.context_radius_A)]
    if params.elements:
        words += ["--elements", ",".join(params.elements)]
    return " ".join(map(shlex.quote, words))


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
