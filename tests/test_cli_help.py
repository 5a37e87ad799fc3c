"""Both command lines document every flag: each option of each subcommand has a help text and
shows its default, and ``--help`` prints no third-party warnings."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from structlayers.clikit import HelpFormatter, build_parser

CLIS = {"structlayers": ("structlayers.cli.commands", "structlayers"),
        "atompaint": ("atompaint.cli.commands", "atompaint")}


def _subcommands(cli: str) -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(*CLIS[cli], "")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("cli", sorted(CLIS))
def test_every_flag_has_help_and_shows_its_default(cli: str) -> None:
    undocumented, as_python = [], []
    for name, parser in _subcommands(cli).items():
        formatter = HelpFormatter(f"{cli} {name}")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            text = formatter._get_help_string(action) or ""
            if not action.help or (action.option_strings and not ("default" in text.lower() or action.required)):
                undocumented.append(f"{cli} {name} {'/'.join(action.option_strings) or action.dest}")
            if re.search(r"\(default: (False|True|None)\)|\(default: [[{(]", text):
                as_python.append(f"{cli} {name} {'/'.join(action.option_strings)}: {text}")
        assert f"{cli} {name}" in parser.format_help()
    assert not undocumented, "flags without a help text or a default: " + ", ".join(undocumented)
    assert not as_python, "defaults shown as Python values, not as typed: " + "; ".join(as_python)


def test_help_shows_list_and_switch_defaults_as_typed() -> None:
    bench = _subcommands("structlayers")["bench"].format_help()
    assert "(default: 256 1024 4096)" in bench and "(default: off)" in bench


def test_atompaint_help_prints_no_warnings() -> None:
    out = subprocess.run([sys.executable, "-c", "from atompaint.cli import main; main(['train', '--help'])"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "usage: atompaint train" in out.stdout
    assert "Warning" not in out.stderr and "py3nj" not in out.stderr, out.stderr


def test_bench_no_progress_prints_no_progress_lines(capsys) -> None:
    from structlayers.cli import main

    assert main(["bench", "--layers", "lowrank", "--sizes", "8", "--batch-size", "2", "--repeats", "1",
                 "--large-repeats", "1", "--warmup", "0", "--no-collapse", "--bandwidth-mb", "1",
                 "--gemm-size", "16", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "vs linear" in out and "timing" not in err


def test_lists_are_space_separated_and_comma_lists_read_the_same() -> None:
    commands = _subcommands("structlayers")
    spaced = commands["bench"].parse_args(["--sizes", "8", "16", "--layers", "acdc", "lowrank"])
    commas = commands["bench"].parse_args(["--sizes", "8,16", "--layers", "acdc,lowrank"])
    assert spaced.sizes == commas.sizes == [8, 16] and spaced.layers == commas.layers == ["acdc", "lowrank"]
    approx = commands["approx"]
    assert approx.parse_args(["--depth", "1", "2"]).depth == approx.parse_args(["--depth", "1,2"]).depth == [1, 2]
    assert commands["replace"].parse_args(["mnist-mlp", "--targets", "linear,pointwise"]).targets == \
        ["linear", "pointwise"]
    assert commands["bench"].parse_args(["--sizes", "8", "--sizes", "16,32"]).sizes == [8, 16, 32]
    assert commands["bench"].parse_args([]).sizes == [256, 1024, 4096]
    evaluate = _subcommands("atompaint")["evaluate"]
    assert evaluate.parse_args(["x.ckpt", "--padding", "2", "--padding", "0"]).padding == \
        evaluate.parse_args(["x.ckpt", "--padding", "2", "0"]).padding == [2.0, 0.0]


def test_one_batch_flag_and_one_init_word_the_old_spellings_warn() -> None:
    commands = _subcommands("structlayers")
    assert commands["bench"].parse_args(["--batch-size", "4", "8"]).batch_size == [4, 8]
    with pytest.warns(FutureWarning, match="--batch is deprecated"):
        assert commands["bench"].parse_args(["--batch", "4", "8"]).batch_size == [4, 8]
    with pytest.warns(FutureWarning, match="--init random is deprecated"):
        assert commands["replace"].parse_args(["mnist-mlp", "--init", "random"]).init == "scratch"
