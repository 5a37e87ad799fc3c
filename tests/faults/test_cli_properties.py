"""Property-based fault probes of both command lines: argument vectors drawn from numbers at and
past each limit, NaN / inf, empty strings, and paths that are folders, missing, unwritable or of
the wrong kind, for every subcommand.  Only the contract is asserted: exit 0 with a result, or
exit 2 with one line ``PROG CMD: error: ...`` -- never a traceback, never exit 130 without a signal.

Everything runs in this process (the CLIs' ``main(argv)``), with a deterministic profile and few
examples per subcommand.  Valid runs are made tiny by the base arguments; commands whose valid
runs are expensive (``train``, ``atompaint count``) draw only values their checks refuse.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from itertools import chain
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults.probes import error_line

DATA = Path(__file__).parents[1] / "atompaint" / "data"
REPO = Path(__file__).parents[2]

pytestmark = pytest.mark.filterwarnings("ignore")

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: Numbers at and past the limits of counts and sizes, and text that is no number at all.
COUNTS = st.sampled_from(["0", "-1", "1", "2", "nan", "inf", "-inf", "1e-9", "2.5", "", " ", "abc",
                          "99999999999999999999"])
#: Real-valued settings: the same, plus tiny and huge magnitudes.
REALS = st.sampled_from(["0", "-1", "1", "0.5", "nan", "inf", "-inf", "1e-9", "1e308", "", "abc"])
#: Output paths: a folder, a file's child, a missing folder (created), an unwritable place, empty.
OUTPUTS = st.sampled_from(["{dir}", "{file}/out.json", "{dir}/new/out.json", "/proc/out.json", "", "{dir}/out"])
#: Input files: missing, a folder, empty, garbage, a torch file of a bare tensor, empty text.
INPUTS = st.sampled_from(["{missing}", "{dir}", "{empty}", "{garbage}", "{tensor}", "", "{yaml_list}"])


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The paths the placeholders of the strategies stand for."""
    root = tmp_path_factory.mktemp("cli-properties")
    (root / "file").write_text("a file, not a folder\n")
    (root / "empty").write_bytes(b"")
    (root / "garbage").write_bytes(b"\x00\x01 not a torch file, nor YAML: [\n")
    torch.save(torch.zeros(3), root / "tensor.pt")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    structures = root / "structures"
    structures.mkdir()
    shutil.copy(DATA / "2xcjA.pdb.gz", structures)
    return {"{dir}": str(root), "{file}": str(root / "file"), "{missing}": str(root / "missing.ckpt"),
            "{empty}": str(root / "empty"), "{garbage}": str(root / "garbage"), "{tensor}": str(root / "tensor.pt"),
            "{yaml_list}": str(root / "list.yaml"), "{structures}": str(structures),
            "{structure}": str(structures / "2xcjA.pdb.gz")}


def options(slots: dict[str, st.SearchStrategy[str]], max_size: int = 3) -> st.SearchStrategy[list[str]]:
    """Up to ``max_size`` of the flags in ``slots``, each with a value drawn from its strategy."""
    flags = st.lists(st.sampled_from(sorted(slots)), min_size=1, max_size=max_size, unique=True)
    return flags.flatmap(lambda chosen: st.tuples(*[slots[f].map(lambda v, f=f: [f, v]) for f in chosen])).map(
        lambda pairs: list(chain.from_iterable(pairs)))


def check_contract(prog: str, argv: list[str], places: dict[str, str]) -> None:
    """Run ``prog``'s ``main(argv)`` in this process (placeholders replaced) and assert the
    command-line contract."""
    if prog == "structlayers":
        from structlayers.cli import main
    else:
        from atompaint.cli import main
    for key, value in places.items():
        argv = [a.replace(key, value) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as stop:  # argparse's own errors
                code = stop.code
    finally:
        torch.set_num_threads(threads)
    assert code in (0, 2), f"{argv}: exit {code}\n{err.getvalue()}"
    if code == 2:
        assert error_line(err.getvalue()).startswith(f"{prog} {argv[0]}: error: "), (argv, err.getvalue())
    else:
        assert "Traceback" not in err.getvalue() and (out.getvalue().strip() or "wrote" in err.getvalue()), argv


LAYERS = st.sampled_from(["acdc", "lowrank", "", "nope", "acdc:sigma=nan", "monarch", "stack"])
LAYER_OPTIONS = st.sampled_from(["sigma=nan", "sigma=inf", "sigma=", "bias=2", "rank=0", "seed=-1", "groups=0",
                                 "init=nope", "=1", "rank=99999999999999999999"])

APPROX = ["approx", "--n", "8", "--steps", "2", "--seeds", "1", "--no-progress", "--no-timing"]
APPROX_SLOTS = {"--n": COUNTS, "--steps": st.sampled_from(["0", "-1", "1", "nan", ""]), "--seeds": COUNTS,
                "--depth": COUNTS, "--params-budget": COUNTS, "--threads": COUNTS, "--lr": REALS, "--ftol": REALS,
                "--gtol": REALS, "--patience": COUNTS, "--layer": LAYERS, "-o": LAYER_OPTIONS,
                "--target": st.one_of(INPUTS, st.sampled_from(["gaussian", "dct", "nope"])), "--json": OUTPUTS,
                "--plot": OUTPUTS, "--shuffle": st.sampled_from(["", "nope", "riffle,", "random"]),
                "--optimizer": st.sampled_from(["trf", "adam", "cg", "nope"])}

BENCH = ["bench", "--layers", "lowrank", "--sizes", "8", "--batch-size", "1", "--repeats", "1", "--large-repeats", "1",
         "--warmup", "0", "--no-collapse", "--collapse-repeats", "1", "--bandwidth-mb", "1", "--gemm-size", "8",
         "--no-backward", "--allocator", "system"]
BENCH_SLOTS = {"--sizes": COUNTS, "--batch-size": COUNTS, "--depth": COUNTS, "--threads": COUNTS,
               "--repeats": st.sampled_from(["0", "-1", "1", "nan"]), "--warmup": st.sampled_from(["-1", "0", "x"]),
               "--bandwidth-mb": st.sampled_from(["0", "-1", "1", "99999999999999999999"]),
               "--gemm-size": st.sampled_from(["0", "-1", "8", "99999999999999999999"]),
               "--layers": LAYERS, "--device": st.sampled_from(["", "cpu", "cuda:9", "tpu9", "meta"]),
               "--json": OUTPUTS, "--plot": OUTPUTS}

COUNT = ["count", "mnist-mlp"]
SURGERY_SLOTS = {"--replace": LAYERS, "--depth": COUNTS, "-o": LAYER_OPTIONS, "--skip-first": COUNTS,
                 "--skip-last": COUNTS, "-m": st.sampled_from(["hidden=0", "width=", "nope=1", "hidden=-1"]),
                 "--targets": st.sampled_from(["", "nope*", "all", "linear"]), "--json": OUTPUTS}
COUNT_SLOTS = {**SURGERY_SLOTS, "--batch-size": COUNTS}

REPLACE = ["replace", "mnist-mlp", "--replace", "lowrank", "-o", "rank=4"]
REPLACE_SLOTS = {**SURGERY_SLOTS, "--weights": INPUTS, "--init": st.sampled_from(["project", "fit", "random", ""]),
                 "--fit-steps": st.sampled_from(["0", "-1", "1", "nan"]), "--out": OUTPUTS, "--seed": COUNTS}

TRAIN = ["train", "mnist", "--data-dir", "{dir}/no-data", "--out-dir", "{dir}/runs", "--no-progress"]
TRAIN_SLOTS = {"--epochs": st.sampled_from(["0", "-1", "nan", "", "abc"]), "--lr": st.sampled_from(["nan", "inf", ""]),
               "--batch-size": st.sampled_from(["0", "-1", ""]), "--devices": st.sampled_from(["0", "-1", "abc"]),
               "--out-dir": st.sampled_from(["{file}", "{file}/run", "/proc/run"]),
               "--resume-from": INPUTS, "--accelerator": st.sampled_from(["tpu", ""])}


VOXELIZE = ["voxelize", "{structure}", "--length", "5", "--out", "{dir}/image.npz"]
VOXELIZE_SLOTS = {"--length": COUNTS, "--resolution": REALS, "--radius": REALS,
                  "--center": st.sampled_from(["", "0,0", "nan,0,0", "inf,1,2", "1e308,0,0", "a,b,c", "0,0,0"]),
                  "--channels": st.sampled_from(["", ";", "C;;N", "XX", "*", "C,"]), "--seed": COUNTS,
                  "--fill": st.sampled_from(["", "nope", "occupancy"]), "--out": OUTPUTS, "--plot": OUTPUTS}

INDEX = ["index", "{structures}", "--out", "{dir}/origins.db", "--no-progress"]
INDEX_SLOTS = {"--out": st.one_of(OUTPUTS, st.sampled_from(["{garbage}", "{empty}", "{file}"])), "--radius": REALS,
               "--min-atoms": COUNTS, "--elements": st.sampled_from(["", ",", "C,,N", "XX", "C", "c,n"])}

EVALUATE_SLOTS = {"--batch-size": COUNTS, "--padding": REALS, "--set": st.sampled_from(["", "=1", "data.val_size=0"]),
                  "--json": OUTPUTS}

ENCODER_INVALID = {"--memory-batch-size": st.sampled_from(["-1", "nan", ""]),
                   "--head-depth": st.sampled_from(["0", "-1", ""]), "--json": st.sampled_from(["{dir}", "/proc/x"])}

ATOMPAINT_TRAIN_SLOTS = {"--devices": st.sampled_from(["0", "abc"]),
                         "--out-dir": st.sampled_from(["{file}", "/proc/r"]), "--resume-from": INPUTS,
                         "--accelerator": st.sampled_from(["tpu", ""])}


def argv(base: list[str], slots: dict[str, st.SearchStrategy[str]], max_size: int = 3) -> st.SearchStrategy[list[str]]:
    return options(slots, max_size).map(lambda extra: [*base, *extra])


#: Every subcommand of both command lines: ``(program, strategy of its whole argument vector)``.
COMMANDS: dict[str, tuple[str, st.SearchStrategy[list[str]]]] = {
    "approx": ("structlayers", argv(APPROX, APPROX_SLOTS)),
    "bench": ("structlayers", argv(BENCH, BENCH_SLOTS)),
    "count": ("structlayers", argv(COUNT, COUNT_SLOTS)),
    "replace": ("structlayers", argv(REPLACE, REPLACE_SLOTS)),
    "layers": ("structlayers", st.lists(st.sampled_from(["", "acdc", "nope", "stack", "--json", "-x"]), max_size=2)
               .map(lambda extra: ["layers", *extra])),
    "train": ("structlayers", argv(TRAIN, TRAIN_SLOTS, max_size=2)),
    "voxelize": ("atompaint", argv(VOXELIZE, VOXELIZE_SLOTS)),
    "index": ("atompaint", argv(INDEX, INDEX_SLOTS, max_size=2)),
    "evaluate": ("atompaint", st.tuples(INPUTS, st.one_of(st.just([]), options(EVALUATE_SLOTS, max_size=2)))
                 .map(lambda c: ["evaluate", c[0], *c[1]])),
    "atompaint count": ("atompaint", st.tuples(
        st.one_of(INPUTS, st.just(str(REPO / "experiments/neighbor_loc/sanity_acdc.yaml"))),
        options(ENCODER_INVALID, max_size=1)).map(lambda c: ["count", c[0], *c[1]])),
    "atompaint train": ("atompaint", st.tuples(
        st.sampled_from(["neighbor-loc", "lba", "nope"]), INPUTS,
        st.one_of(st.just([]), options(ATOMPAINT_TRAIN_SLOTS, max_size=1))).map(
        lambda c: ["train", c[0], "--config", c[1], *c[2]])),
}


@pytest.mark.parametrize("command", list(COMMANDS))
@given(data=st.data())
@PROPERTY
def test_every_subcommand_ends_in_a_result_or_one_error_line(places: dict[str, str], command: str,
                                                            data: st.DataObject) -> None:
    prog, strategy = COMMANDS[command]
    check_contract(prog, data.draw(strategy, label="argv"), places)
