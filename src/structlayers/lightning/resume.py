"""Resuming with changed optimisation settings: the optimiser and scheduler states of a Lightning
checkpoint rewritten so that the resumed run follows the new :class:`OptimConfig` and length.

A checkpoint stores the optimiser's ``param_groups`` (learning rate, momentum, ...) and the
scheduler's state (its base rates, its horizon such as ``T_max``), and Lightning restores both over
the ones ``configure_optimizers`` built from the new settings, so without this a new learning rate
or a longer run is silently ignored and a different optimiser fails on a missing key.
:func:`retarget_optimizer` edits the checkpoint before it is restored (from a LightningModule's
``on_load_checkpoint``):

- the schedule is the one the new settings would have produced from step 0 over the new number
  of steps, continued at the checkpoint's step (a step-wise schedule is replayed on a stand-in
  parameter, which is exact whatever the schedule's form);
- the optimiser's per-parameter state (Adam's moments, SGD's momentum buffers) is kept when the
  optimiser is the same and reset when it changes;
- ``plateau`` keeps the reductions it already made (the new rate times the same factor) and its
  patience counters, since those depend on the metrics seen, not on the step.

Nothing changes when neither the settings nor the number of steps did, so a plain resume stays exact.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

from structlayers.configs import from_dict, to_dict
from structlayers.lightning.optim import OptimConfig

#: Checkpoint entry recording the optimisation settings and the planned number of steps.
OPTIM_KEY = "structlayers_optim"


def optim_record(optim: OptimConfig, total_steps: int | float) -> dict[str, Any]:
    """What a module stores under :data:`OPTIM_KEY` in ``on_save_checkpoint``."""
    return {"config": to_dict(optim), "total_steps": int(total_steps)}


def _unpack(configured: Any) -> tuple[torch.optim.Optimizer, Any, str]:
    if isinstance(configured, torch.optim.Optimizer):
        return configured, None, "step"
    scheduler = configured["lr_scheduler"]
    return configured["optimizer"], scheduler["scheduler"], scheduler.get("interval", "epoch")


def _planned_steps(scheduler_states: list[Any]) -> int | None:
    for state in scheduler_states:
        if isinstance(state, Mapping):
            for key in ("T_max", "total_steps"):
                if isinstance(state.get(key), int):
                    return state[key]
    return None


def retarget_optimizer(checkpoint: dict[str, Any], optim: OptimConfig, total_steps: int | float,
                       previous: OptimConfig | Mapping[str, Any] | None = None) -> list[str]:
    """Rewrite ``checkpoint``'s ``optimizer_states`` and ``lr_schedulers`` for a run continuing
    with ``optim`` over ``total_steps`` optimiser steps in all (see the module docs); returns a
    description of each change made (empty when nothing changed).

    The settings the checkpoint was written with come from its :data:`OPTIM_KEY` entry, else from
    ``previous`` (e.g. the module's saved hyperparameters); with neither, nothing is changed.
    """
    saved = checkpoint.get(OPTIM_KEY)
    states = checkpoint.get("optimizer_states") or []
    schedulers = list(checkpoint.get("lr_schedulers") or [])
    if isinstance(saved, Mapping):
        old = from_dict(OptimConfig, saved["config"])
        old_total: int | None = int(saved["total_steps"])
    elif previous is not None:
        old = previous if isinstance(previous, OptimConfig) else from_dict(OptimConfig, previous)
        old_total = _planned_steps(schedulers)
    else:
        return []
    total = max(1, int(total_steps))
    stepwise = optim.schedule in ("cosine", "onecycle")
    if old == optim and (not stepwise or old_total in (None, total)):
        return []
    if len(states) != 1:
        raise ValueError(f"cannot apply new optimisation settings: the checkpoint holds {len(states)} optimisers, "
                         "expected one")
    step = int(checkpoint.get("global_step", 0))
    stand_in = torch.nn.Parameter(torch.zeros(1))
    opt, scheduler, interval = _unpack(optim.configure([stand_in], total))
    notes = [f"{k}: {getattr(old, k)!r} -> {getattr(optim, k)!r}" for k in to_dict(optim)
             if getattr(old, k) != getattr(optim, k)]
    keep_plateau = optim.schedule == "plateau" and old.schedule == "plateau"
    if scheduler is not None and interval == "step":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(step):
                opt.step()
                scheduler.step()
        if old_total != total:
            notes.append(f"{optim.schedule} schedule over {total} steps (was {old_total}), continued at step {step}")
    saved_state = states[0]
    fresh = opt.state_dict()["param_groups"][0]
    groups = []
    for group in saved_state["param_groups"]:
        new_group = {**fresh, "params": group["params"]}
        if keep_plateau:
            new_group["lr"] = optim.lr * group["lr"] / old.lr
        groups.append(new_group)
    if old.optimizer != optim.optimizer:
        notes.append(f"optimizer state reset ({old.optimizer} -> {optim.optimizer})")
    state = saved_state["state"] if old.optimizer == optim.optimizer else {}
    checkpoint["optimizer_states"] = [{"state": state, "param_groups": groups}]
    if keep_plateau and schedulers:
        plateau = dict(schedulers[0])
        plateau.update(factor=optim.plateau_factor, patience=optim.plateau_patience,
                       _last_lr=[g["lr"] for g in groups])
        checkpoint["lr_schedulers"] = [plateau]
    else:
        checkpoint["lr_schedulers"] = [] if scheduler is None else [scheduler.state_dict()]
    checkpoint[OPTIM_KEY] = optim_record(optim, total)
    return notes
