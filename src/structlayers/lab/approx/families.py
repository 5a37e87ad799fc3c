"""Configurations of each structured family and the one that spends a parameter budget.

For the cross-family comparison at equal parameters, every family enumerates its configurations
(a stack depth, block counts, ranks) with their exact parameter counts, and :func:`pick` takes the
largest count within the budget.  Layers are fitted without biases (the targets are linear maps),
so the counts are those of ``bias=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from structlayers.registry import LayerSpec, accepted_options, create, get

#: The deepest stack considered for a budget.
MAX_DEPTH = 64
#: Families whose stacks start near the identity (``init="identity"``): with their single-layer
#: ``nn.Linear``-scaled initialisation a product of K factors shrinks like ~0.6^K.
NEAR_IDENTITY = ("circulant", "toeplitz")


@dataclass(frozen=True)
class Candidate:
    """One configuration of a family, its parameter count and its label in tables."""

    spec: LayerSpec
    params: int
    label: str


def _candidate(name: str, n_in: int, n_out: int, depth: int | None, options: dict[str, Any], label: str,
               params: int | None = None) -> Candidate:
    spec = LayerSpec(name, depth, options)
    return Candidate(spec, spec.build(n_in, n_out).params() if params is None else params, label)


def _params(layer: str, n_in: int, n_out: int, depth: int | None, options: dict[str, Any]) -> int:
    return create(layer, n_in, n_out, depth=depth, **options).params()


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _block_counts(n_in: int, n_out: int) -> list[int]:
    """Block counts that divide both sizes (no padding), or of the larger one when none but 1 does."""
    common = [d for d in _divisors(math.gcd(n_in, n_out)) if d > 1]
    return [1, *common] if common else _divisors(max(n_in, n_out))


def candidates(spec: LayerSpec, n_in: int, n_out: int, shuffle: str, seed: int = 0,
               label: str | None = None) -> list[Candidate]:
    """Every configuration of ``spec``'s family considered for a budget (biases off): stack depths
    1..64 of a stackable layer (a stack's count is the sum of its factors'), block counts and
    ranks of ``monarch`` / ``kronecker``, ranks of ``lowrank`` / ``lowrank_diag``, groups and
    depths of ``blockdiag``; any other layer as it is.  Labels start with ``label`` (default: the
    spec's text form)."""
    options = {**spec.options}
    if "bias" in accepted_options(spec.name, options):
        options.setdefault("bias", False)
    name, out, label = spec.name, [], str(spec) if label is None else label
    if name in ("monarch", "kronecker"):
        for b in _block_counts(n_in, n_out):
            p, s = -(-n_in // b), -(-n_out // b)
            largest = min(p, s) if name == "monarch" else min(b * b, p * s)
            for rank in range(1, largest + 1):
                opts = {**options, "nblocks": b, "rank": rank}
                out.append(_candidate(name, n_in, n_out, None, opts, f"{label} b={b} r={rank}"))
        return out
    if name in ("lowrank", "lowrank_diag"):
        for rank in range(1, min(n_in, n_out) + 1):
            opts = {**options, "rank": rank}
            out.append(_candidate(name, n_in, n_out, None, opts, f"{label} r={rank}"))
        return out
    if name == "blockdiag" or get(name).stackable:
        variants = ([({**options, "groups": g}, f" g={g}") for g in _divisors(max(n_in, n_out)) if g > 1]
                    if name == "blockdiag" else [(options, "")])
        for opts, tag in variants:
            deep = {**opts, "shuffle": shuffle, "seed": seed}
            if name in NEAR_IDENTITY and "init" not in opts:
                deep["init"] = "identity"  # a deep product of nn.Linear-scaled factors would vanish
            # A stack of a rectangular map pads to square factors, so its count is measured, not
            # depth times one layer's: its factors are identical, so the count is linear in depth.
            one, two, three = (_params(name, n_in, n_out, d, deep if d else opts) for d in (None, 2, 3))
            for depth in range(1, MAX_DEPTH + 1):
                count = one if depth == 1 else two + (depth - 2) * (three - two)
                out.append(_candidate(name, n_in, n_out, depth if depth > 1 else None, deep if depth > 1 else opts,
                                      f"{label}{tag} K={depth}" + (f" {shuffle}" if depth > 1 else ""), count))
        return out
    return [_candidate(name, n_in, n_out, None, options, label)]


def _preference(c: Candidate, n: int) -> tuple[float, ...]:
    """Among equal counts: fewer factors, block counts nearer ``sqrt(n)`` (the Monarch paper's
    choice), lower ranks."""
    blocks = c.spec.options.get("nblocks", c.spec.options.get("groups"))
    near = abs(math.log(blocks) - 0.5 * math.log(n)) if blocks else 0.0
    return (c.spec.depth or 1, near, c.spec.options.get("rank", 0))


def pick(options: list[Candidate], budget: int, n: int) -> Candidate | None:
    """The candidate with the most parameters within ``budget`` (None if even the smallest exceeds it)."""
    fitting = [c for c in options if c.params <= budget]
    if not fitting:
        return None
    most = max(c.params for c in fitting)
    return min((c for c in fitting if c.params == most), key=lambda c: _preference(c, n))
