"""Fault probes of bad input: layer options, state dicts of another layout, output paths, empty
batches, devices and sizes that cannot be served.  Each command ends in one clear error line (or
the right result), never a traceback and never a silent wrong value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import structlayers
from structlayers.registry import parse_options
from structlayers.utils.memory import AllocationTooLargeError
from tests.faults.probes import CLI, error_line

APPROX = ("approx", "--n", "8", "--steps", "2", "--seeds", "1", "--no-progress")


# -- layer options ---------------------------------------------------------------------------------

def test_bias_false_is_false(cli: CLI, tmp_path: Path) -> None:
    code, _, err = cli(*APPROX, "-o", "bias=false", "--json", tmp_path / "r.json")
    assert code == 0, err
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["config"]["layer"] == "acdc:bias=false"
    assert record["jobs"][0]["options"]["bias"] is False
    assert parse_options("acdc", {"bias": "FALSE"}) == {"bias": False}


@pytest.mark.parametrize(("option", "message"), [
    ("sigma=abc", "layer option 'sigma': expected a number, got 'abc'"),
    ("sigma=inf", "layer option 'sigma': expected a finite number"),
    ("bias=maybe", "layer option 'bias': expected true or false"),
])
def test_ill_typed_options_are_one_line_errors(cli: CLI, option: str, message: str) -> None:
    code, _, err = cli(*APPROX, "-o", option)
    assert code == 2 and message in error_line(err)


def test_a_stack_seed_does_not_collide_with_its_factors(cli: CLI) -> None:
    stack = structlayers.create("acdc", 8, 8, depth=3, seed=5, inner_shuffle="random")
    again = structlayers.create("acdc", 8, 8, depth=3, seed=5, inner_shuffle="random")
    assert all(torch.equal(a.inner.index, b.inner.index) for a, b in zip(stack.factors, again.factors))
    assert all(torch.equal(a.index, b.index) for a, b in zip(stack.shuffles, again.shuffles))
    code, _, err = cli(*APPROX, "--depth", "2", "-o", "seed=5")
    assert code == 0, err
    code, _, err = cli("count", "mnist-mlp", "--replace", "acdc", "--depth", "2", "-o", "seed=5")
    assert code == 0, err


def test_depth_is_not_a_layer_option(cli: CLI) -> None:
    code, _, err = cli("count", "mnist-mlp", "--replace", "stack", "-o", "seed=5", "-o", "depth=3")
    assert code == 2 and "give the stack depth with --depth" in error_line(err)
    with pytest.raises(ValueError, match="depth is given twice"):
        parse_options("stack", {"depth": "3"}, depth=4)


def test_approx_options_are_the_fitted_family_s(cli: CLI) -> None:
    """``-o`` goes to each fitted family; a stack-only option (a nonlinearity has no dense form to
    fit) is refused with the family's options listed."""
    code, _, err = cli(*APPROX, "--depth", "2", "-o", "activation=relu")
    assert code == 2 and "layer 'acdc' has no option(s) 'activation'; its options are:" in error_line(err)


def test_a_state_dict_of_another_group_layout_does_not_load() -> None:
    one, two = structlayers.create("acdc", 8, 8, groups=1), structlayers.create("acdc", 8, 8, groups=2)
    with pytest.raises(ValueError, match="saved from a layer of size 8, 1 group.*this one has size 8, 2 group"):
        two.load_state_dict(one.state_dict())
    stacks = [structlayers.create("acdc", 8, 8, depth=2, groups=g, seed=0) for g in (1, 2)]
    with pytest.raises(ValueError, match="build it with the same groups"):
        stacks[1].load_state_dict(stacks[0].state_dict())


# -- output paths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    APPROX,
    ("count", "mnist-mlp"),
    ("bench", "--layers", "acdc", "--sizes", "8", "--repeats", "1", "--large-repeats", "1", "--warmup", "0",
     "--no-collapse", "--bandwidth-mb", "1", "--gemm-size", "8"),
])
def test_a_folder_as_json_output_fails_before_the_work(cli: CLI, tmp_path: Path, argv: tuple[str, ...]) -> None:
    code, out, err = cli(*argv, "--json", tmp_path)
    assert code == 2 and "is a folder; give a file path" in error_line(err)
    assert out == "", "nothing was computed"


def test_an_unwritable_plot_fails_before_the_fit(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    code, out, err = cli(*APPROX, "--plot", tmp_path / "file" / "plot.png")
    assert code == 2 and "cannot create the folder of --plot" in error_line(err) and out == ""


def test_an_unwritable_run_folder_fails_before_loading_data(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    code, _, err = cli("train", "mnist", "--out-dir", tmp_path / "file" / "run", "--data-dir", tmp_path / "no-data")
    assert code == 2 and "cannot write the run folder" in error_line(err)


# -- edge inputs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["acdc", "afdf", "stack", "blockdiag", "lowrank", "dense"])
def test_an_empty_batch_gives_an_empty_output(name: str) -> None:
    layer = structlayers.create(name, 12, 7, **({"depth": 2} if name == "stack" else {}))
    x = torch.zeros(0, 12, requires_grad=True)
    y = layer(x)
    assert y.shape == (0, 7)
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == (0, 12)
    assert all(p.grad is not None and not p.grad.any() for p in layer.parameters()), "zero gradients, as for a batch"
    with torch.no_grad():
        assert layer(torch.zeros(2, 0, 12)).shape == (2, 0, 7)


def test_an_unknown_bench_device_is_one_line(cli: CLI) -> None:
    code, _, err = cli("bench", "--device", "tpu9", "--layers", "acdc", "--sizes", "8")
    assert code == 2 and "unknown device 'tpu9'" in error_line(err)


@pytest.mark.parametrize(("argv", "message"), [
    (("approx", "--n", "4000000", "--steps", "1"), "approx --n 4000000 needs about"),
    (("bench", "--layers", "acdc", "--sizes", "100000000"), "bench size N=100000000 needs about"),
])
def test_sizes_beyond_the_memory_are_refused_up_front(cli: CLI, argv: tuple[str, ...], message: str) -> None:
    code, _, err = cli(*argv)
    assert code == 2 and message in error_line(err) and "available on cpu" in error_line(err)


def test_dense_forms_beyond_the_memory_are_refused_up_front() -> None:
    with pytest.raises(AllocationTooLargeError, match="the dense form of layer 'acdc' .*needs about"):
        structlayers.create("acdc", 2**21, 2**21).to_dense()
    with pytest.raises(AllocationTooLargeError, match="the dense form of layer 'stack'"):
        structlayers.create("acdc", 2**19, 2**19, depth=2).to_dense()
    with pytest.raises(MemoryError, match="layer 'dense' .*needs about"):
        structlayers.create("dense", 2**21, 2**21)


def test_malformed_key_value_option_is_one_line(cli: CLI) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(*APPROX, "-o", "sigma")
    assert exit_info.value.code == 2
