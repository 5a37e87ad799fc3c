"""``atompaint train --config FILE``: train the neighbor-location, LBA or amino-acid environment
model with Lightning (the task is the one the config names)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from atompaint.cli.commands._encoder_flags import add_encoder_flags, encoder_overrides
from atompaint.tasks import TASKS
from structlayers import clikit

NAME = "train"
HELP = "Train a model (neighbor-loc, lba or residue-env) from a YAML config with Lightning."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = _HelpFormatter
    parser.add_argument("task", nargs="?", choices=list(TASKS),
                        help="deprecated (a warning), the config names its task: if given, it must be the "
                             "config's (default: the config's task)")
    parser.add_argument("--config", required=True,
                        help="YAML training config (see experiments/neighbor_loc/, experiments/lba/ and "
                             "experiments/residue_env/)")
    clikit.add_out_dir(parser, "the run folder is <out-dir>/<config name>: its config, history, checkpoints, CSV logs, "
                        "curves and summary (default: runs/)", default=Path("runs"))
    clikit.add_resume_arguments(parser, nargs="?", const=True, default=False, action=_Resume)
    group = parser.add_argument_group("overrides of the config (each flag left out keeps the config's value)")
    group.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs")
    clikit.add_deprecated(group, "--max-epochs", "--epochs", "epochs", type=int)
    group.add_argument("--devices", default=None, help="trainer.devices, e.g. 1, 4, 0,1 or auto")
    group.add_argument("--strategy", default=None, help="trainer.strategy, e.g. ddp")
    group.add_argument("--accelerator", default=None, help="trainer.accelerator: cpu, gpu or auto")
    group.add_argument("--fast-dev-run", type=int, nargs="?", const=1, default=None, metavar="N",
                       help="trainer.fast_dev_run: run N train/val batches only (1 when N is left out), as a "
                            "smoke test")
    group.add_argument("--head-layer", default=None, metavar="LAYER",
                       help="head.layer, a structlayers layer NAME[:depth=N][:KEY=VALUE...] "
                            "(dense, acdc:depth=12, ...)")
    group.add_argument("--head-depth", type=int, default=None, help="head.depth (needs --head-layer)")
    add_encoder_flags(group)
    group.add_argument("--pretrained", default=None,
                       help="LBA: finetune.pretrained, a neighbor-loc checkpoint (e.g. "
                            "runs/<name>/checkpoints/last.ckpt)")
    group.add_argument("--set", dest="overrides", type=clikit.key_value, action="append", default=[],
                       metavar="KEY=VALUE",
                       help="any config value by its dotted key, e.g. data.weighted=true or optim.lr=3e-4 "
                            "(repeatable)")
    clikit.add_no_progress(group)


class _Resume(argparse.Action):
    """Bare ``--resume``; the earlier ``--resume last`` (the same) and ``--resume CKPT`` (now
    ``--resume-from CKPT``) still work, with a deprecation warning."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is None or values is True:
            namespace.resume = True
        elif values == "last":
            clikit.warn_deprecated(parser, "--resume last", "--resume")
            namespace.resume = True
        else:
            clikit.warn_deprecated(parser, "--resume CKPT", "--resume-from CKPT")
            namespace.resume_from = Path(values)


class _HelpFormatter(clikit.HelpFormatter):
    """Shows ``--resume`` without the value that only its deprecated spellings take."""

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        return "" if isinstance(action, _Resume) else super()._format_args(action, default_metavar)


def overrides(args: argparse.Namespace, task: str) -> dict[str, Any]:
    """The dotted config keys the flags set for a config of ``task``."""
    changes: dict[str, Any] = dict(args.overrides)
    changes.update(encoder_overrides(args))
    flags = {"epochs": "trainer.max_epochs", "devices": "trainer.devices", "strategy": "trainer.strategy",
             "accelerator": "trainer.accelerator", "fast_dev_run": "trainer.fast_dev_run"}
    for dest, key in flags.items():
        if getattr(args, dest, None) is not None:
            changes[key] = getattr(args, dest)
    if args.no_progress:
        changes["trainer.progress_bar"] = False
    if args.head_layer is not None:  # the whole layer (its text form's depth and options), then --head-depth
        changes["head.layer"] = args.head_layer
        if args.head_depth is not None:
            changes["head.depth"] = args.head_depth
    elif args.head_depth is not None:
        raise ValueError("--head-depth needs --head-layer")
    if args.pretrained is not None:
        if task != "lba":
            raise ValueError("--pretrained only applies to lba fine-tuning")
        changes["finetune.pretrained"] = args.pretrained
    return changes


def run(args: argparse.Namespace) -> int:
    from atompaint.training import load_config, train
    from structlayers.configs import replace_fields

    config = load_config(args.config)
    if args.task is not None:
        warnings.warn("atompaint train TASK --config FILE: the positional TASK is deprecated and will be removed in "
                      "the next release; the config names its task", DeprecationWarning, stacklevel=2)
        print(f"atompaint train: warning: the positional task {args.task!r} is deprecated; "
              "the config names its task", file=sys.stderr)
        if config.task != args.task:
            raise ValueError(f"{args.config} is a {config.task!r} config, not {args.task!r}")
    config = replace_fields(config, overrides(args, config.task), "config")
    if not config.trainer.fast_dev_run:  # a smoke test writes nothing, anywhere
        clikit.check_output_dir(args.out_dir, "run folder (--out-dir)")
    result = train(config, out_dir=args.out_dir, resume=args.resume, resume_from=args.resume_from,
                   overwrite=args.overwrite, override=args.override)
    if result.interrupted:
        return 128 + (result.signal or 2)  # the shell's status for a process stopped by that signal
    summary = {
        "run_dir": None if config.trainer.fast_dev_run else str(result.run_dir),
        "seconds": round(result.seconds, 1),
        "metrics": {k: round(v, 4) for k, v in sorted(result.metrics.items())},
        "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "curves": str(result.curves) if result.curves else None,
        **result.extra,
    }
    print(json.dumps(summary, indent=2))
    if config.trainer.fast_dev_run:
        print("--fast-dev-run: a smoke test, nothing written")
    return 0
