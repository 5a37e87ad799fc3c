"""What :func:`structlayers.replace` did: one record per replaced or skipped module, and totals."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from structlayers.utils.report import format_table, human


@dataclass
class Replacement:
    """One module swapped for a structured one.  FLOPs are ``None`` without an example input."""

    name: str
    kind: str
    before: str
    after: str
    params_before: int
    params_after: int
    flops_before: int | None = None
    flops_after: int | None = None
    #: Relative Frobenius error of the replacement's effective weight when initialised from the
    #: original (projected and/or fitted).
    fit_error: float | None = None
    #: How the replacement was initialised: "scratch", "projected", "fitted", "projected+fitted"...
    init: str = "scratch"
    #: Other names that reach the same module (or a tied copy), now sharing the one replacement.
    aliases: list[str] = field(default_factory=list)


@dataclass
class Skipped:
    """A module that matched the targets but was left as it is, and why."""

    name: str
    module: str
    reason: str


@dataclass
class ReplaceReport:
    """Replaced and skipped modules, and whole-model totals before and after."""

    layer: str
    replaced: list[Replacement] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    total_params_before: int = 0
    total_params_after: int = 0
    total_flops_before: int | None = None
    total_flops_after: int | None = None

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.replaced]

    def to_text(self) -> str:
        def opt(n: int | None) -> str:
            return "-" if n is None else human(n)

        rows = [
            (" = ".join([r.name, *r.aliases]), r.kind, r.before, r.after,
             f"{human(r.params_before)} -> {human(r.params_after)}", f"{opt(r.flops_before)} -> {opt(r.flops_after)}",
             r.init,
             "-" if r.fit_error is None else f"{r.fit_error:.3g}")
            for r in self.replaced
        ]
        rows.append(("total (model)", "", "", "",
                     f"{human(self.total_params_before)} -> {human(self.total_params_after)}",
                     f"{opt(self.total_flops_before)} -> {opt(self.total_flops_after)}", "", ""))
        text = format_table(("module", "kind", "before", "after", "params", "FLOPs", "init", "weight error"), rows,
                            "llllllll")
        if self.skipped:
            text += "\n\nskipped:\n" + "\n".join(f"  {s.name} ({s.module}): {s.reason}" for s in self.skipped)
        return text

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)
