"""Configurations of each structured family and the one that spends a parameter budget.

For the cross-family comparison at equal parameters, every family enumerates its configurations
(a stack depth, block counts, ranks) with their exact parameter counts, and :func:`pick` takes the
largest count within the budget.  Layers are fitted without biases (the targets are linear maps),
so the counts are those of ``bias=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from structlayers.registry import accepted_options, create, get, parse_options

#: The deepest stack considered for a budget.
MAX_DEPTH = 64
#: Families whose stacks start near the identity (``init="identity"``): with their single-layer
#: ``nn.Linear``-scaled initialisation a product of K factors shrinks like ~0.6^K.
NEAR_IDENTITY = ("circulant", "toeplitz")


@dataclass(frozen=True)
class LayerSpec:
    """A layer to fit: a registered name and its options, written ``name`` or
    ``name:key=value:key=value`` (e.g. ``afdf:cascade=complex``)."""

    layer: str
    options: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    @property
    def label(self) -> str:
        return self.text or self.layer


def parse_spec(text: str) -> LayerSpec:
    """``name[:key=value...]`` with the values typed against the layer's options."""
    name, *pairs = [part.strip() for part in text.split(":")]
    get(name)  # unknown layers are an error here, with the list of known ones
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"layer {text!r}: expected name:key=value, got {pair!r}")
        raw[key.strip()] = value.strip()
    return LayerSpec(name, parse_options(name, raw) if raw else {}, text.strip())


@dataclass(frozen=True)
class Candidate:
    """One configuration of a family: ``create(layer, in, out, depth=depth, **options)``."""

    layer: str
    depth: int | None
    options: dict[str, Any]
    params: int
    label: str


def _params(layer: str, n_in: int, n_out: int, depth: int | None, options: dict[str, Any]) -> int:
    return create(layer, n_in, n_out, depth=depth, **options).params()


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _block_counts(n_in: int, n_out: int) -> list[int]:
    """Block counts that divide both sizes (no padding), or of the larger one when none but 1 does."""
    common = [d for d in _divisors(math.gcd(n_in, n_out)) if d > 1]
    return [1, *common] if common else _divisors(max(n_in, n_out))


def candidates(spec: LayerSpec, n_in: int, n_out: int, shuffle: str, seed: int = 0) -> list[Candidate]:
    """Every configuration of ``spec``'s family considered for a budget (biases off): stack depths
    1..64 of a stackable layer (a stack's count is the sum of its factors'), block counts and
    ranks of ``monarch`` / ``kronecker``, ranks of ``lowrank`` / ``lowrank_diag``, groups and
    depths of ``blockdiag``; any other layer as it is."""
    options = {**spec.options}
    if "bias" in accepted_options(spec.layer, options):
        options.setdefault("bias", False)
    name, out = spec.layer, []
    if name in ("monarch", "kronecker"):
        for b in _block_counts(n_in, n_out):
            p, s = -(-n_in // b), -(-n_out // b)
            largest = min(p, s) if name == "monarch" else min(b * b, p * s)
            for rank in range(1, largest + 1):
                opts = {**options, "nblocks": b, "rank": rank}
                out.append(Candidate(name, None, opts, _params(name, n_in, n_out, None, opts),
                                     f"{spec.label} b={b} r={rank}"))
        return out
    if name in ("lowrank", "lowrank_diag"):
        for rank in range(1, min(n_in, n_out) + 1):
            opts = {**options, "rank": rank}
            out.append(Candidate(name, None, opts, _params(name, n_in, n_out, None, opts), f"{spec.label} r={rank}"))
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
                out.append(Candidate(name, depth if depth > 1 else None, deep if depth > 1 else opts, count,
                                     f"{spec.label}{tag} K={depth}" + (f" {shuffle}" if depth > 1 else "")))
        return out
    return [Candidate(name, None, options, _params(name, n_in, n_out, None, options), spec.label)]


def _preference(c: Candidate, n: int) -> tuple[float, ...]:
    """Among equal counts: fewer factors, block counts nearer ``sqrt(n)`` (the Monarch paper's
    choice), lower ranks."""
    blocks = c.options.get("nblocks", c.options.get("groups"))
    near = abs(math.log(blocks) - 0.5 * math.log(n)) if blocks else 0.0
    return (c.depth or 1, near, c.options.get("rank", 0))


def pick(options: list[Candidate], budget: int, n: int) -> Candidate | None:
    """The candidate with the most parameters within ``budget`` (None if even the smallest exceeds it)."""
    fitting = [c for c in options if c.params <= budget]
    if not fitting:
        return None
    most = max(c.params for c in fitting)
    return min((c for c in fitting if c.params == most), key=lambda c: _preference(c, n))
