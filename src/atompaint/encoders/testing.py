"""The contract of a structured equivariant mixing, as a reusable check (like
:func:`structlayers.testing.check_layer` for plain plugins).

>>> from atompaint.encoders.testing import check_mixing
>>> check_mixing("acdc", depth=2).checks
['shapes', 'to_dense', 'params', 'flops', 'state_dict', 'gradcheck', 'equivariance', 'to_conv', 'export', 'collapse']

In float64 on CPU, for an :class:`~atompaint.encoders.mixing.IrrepMixing` between two spectral regular
field types (4 -> 5 fields of band limit 2 by default) whose per-irrep blocks are the plugin ``layer``:

- ``shapes``: ``(B, C_in, X, Y, Z) -> (B, C_out, X, Y, Z)``;
- ``to_dense``: ``to_dense()`` equals the module applied to the identity (every channel one-hot);
- ``params``: the analytic ``params()`` equals the number of trainable numbers;
- ``flops``: the total of the per-irrep plugin counts on ``voxels * dim psi`` rows, linear in the voxels;
- ``state_dict``: a second instance reproduces the outputs after ``load_state_dict``;
- ``gradcheck``: gradients with respect to the input and every parameter match finite differences;
- ``equivariance``: ``mixing(rho_in(g) x) = rho_out(g) mixing(x)`` for random group elements;
- ``to_conv``: the dense 1x1x1 ``nn.Conv3d`` computes the same;
- ``export``: the plain-PyTorch module computes the same;
- ``collapse``: :func:`structlayers.collapse` forced to dense forms computes the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from escnn import nn as enn
from torch import Tensor, nn

import structlayers
from atompaint.encoders.fields import spectral_field_type
from atompaint.encoders.mixing import IrrepMixing, MixingSpec
from structlayers.base import count_params


@dataclass
class MixingReport:
    """The checks that ran on one mixing configuration, in order."""

    layer: str
    options: dict[str, Any]
    checks: list[str] = field(default_factory=list)


def _close(label: str, check: str, got: Tensor, expected: Tensor, tol: float) -> None:
    scale = max(1.0, float(expected.abs().max()))
    err = float((got - expected).abs().max())
    if not err <= tol * scale:
        raise AssertionError(f"{label}: contract check {check!r} failed: max abs difference {err:.3g} "
                             f"(tolerance {tol * scale:.3g})")


def check_mixing(
    layer: str,
    *,
    depth: int | None = None,
    in_type: enn.FieldType | None = None,
    out_type: enn.FieldType | None = None,
    bias: bool = True,
    seed: int = 0,
    gradcheck: bool = True,
    **options: Any,
) -> MixingReport:
    """Check the contract (see the module docs) of an :class:`IrrepMixing` ``in_type -> out_type``
    (default: 4 -> 5 spectral regular fields of band limit 2) with ``layer`` as every ``M_psi``."""
    in_type = in_type or spectral_field_type(4, 2)
    out_type = out_type or spectral_field_type(5, 2)
    spec = MixingSpec(layer, depth, options)
    shown = "".join(f", {k}={v!r}" for k, v in options.items())
    label = f"mixing {spec.label!r} ({in_type.size} -> {out_type.size}{shown})"
    report = MixingReport(spec.label, dict(options))

    def build(s: int) -> IrrepMixing:
        torch.manual_seed(s)
        return IrrepMixing(in_type, out_type, spec, bias=bias).double().eval()

    module = build(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, in_type.size, 2, 1, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = module(enn.GeometricTensor(x, in_type)).tensor
    if tuple(y.shape) != (2, out_type.size, 2, 1, 3):
        raise AssertionError(f"{label}: contract check 'shapes' failed: output {tuple(y.shape)}")
    report.checks.append("shapes")

    weight, b = module.to_dense()
    eye = torch.eye(in_type.size, dtype=torch.float64).view(in_type.size, in_type.size, 1, 1, 1)
    with torch.no_grad():
        applied = module(enn.GeometricTensor(eye, in_type)).tensor.view(in_type.size, out_type.size)
    offset = b.double() if b is not None else torch.zeros(out_type.size, dtype=torch.float64)
    _close(label, "to_dense", weight.double(), (applied - offset).T, 1e-9)
    report.checks.append("to_dense")

    trainable = count_params(module, trainable=True)
    if module.params() != trainable:
        raise AssertionError(f"{label}: contract check 'params' failed: params() = {module.params()}, "
                             f"trainable numbers {trainable}")
    report.checks.append("params")

    per_irrep = sum(m.flops(7 * module.linear.dims[k]) for k, m in module.linear.maps.items())
    if module.flops(7) != per_irrep or module.flops(14) != 2 * module.flops(7) or module.flops(1) <= 0:
        raise AssertionError(f"{label}: contract check 'flops' failed: {module.flops(7)} for 7 voxels, "
                             f"{module.flops(14)} for 14, per-irrep total {per_irrep}")
    report.checks.append("flops")

    other = build(seed + 1)
    other.load_state_dict(module.state_dict())
    with torch.no_grad():
        _close(label, "state_dict", other(enn.GeometricTensor(x, in_type)).tensor, y, 1e-12)
    report.checks.append("state_dict")

    if gradcheck:
        names = [n for n, p in module.named_parameters() if p.requires_grad]
        params = [p.detach().clone().requires_grad_(True) for n, p in module.named_parameters() if p.requires_grad]
        probe = x[:1, :, :1, :1, :2].clone().requires_grad_(True)

        def f(inp: Tensor, *values: Tensor) -> Tensor:
            return torch.func.functional_call(module.linear, dict((n.removeprefix("linear."), v)
                                                                  for n, v in zip(names, values)), (inp,))

        try:
            torch.autograd.gradcheck(f, (probe, *params), eps=1e-6, atol=1e-5, rtol=1e-4)
        except Exception as err:
            raise AssertionError(f"{label}: contract check 'gradcheck' failed: {str(err).splitlines()[0]}") from None
        report.checks.append("gradcheck")

    group = in_type.fibergroup
    for _ in range(3):
        element = group.sample()
        with torch.no_grad():
            moved = module(enn.GeometricTensor(x, in_type).transform_fibers(element)).tensor
            expected = enn.GeometricTensor(y, out_type).transform_fibers(element).tensor
        _close(label, "equivariance", moved, expected, 1e-9)
    report.checks.append("equivariance")

    with torch.no_grad():
        _close(label, "to_conv", module.to_conv().double()(x), y, 1e-9)
    report.checks.append("to_conv")

    exported = module.export()
    if any("escnn" in type(m).__module__ for m in exported.modules()):
        raise AssertionError(f"{label}: contract check 'export' failed: the export contains escnn modules")
    with torch.no_grad():
        _close(label, "export", exported(x), y, 1e-12)
    report.checks.append("export")

    prefer_dense = lambda _layer, _rows, form: 0.0 if form == "dense" else 1.0
    collapsed, choices = structlayers.collapse(nn.Sequential(exported), x, cost=prefer_dense)
    if not choices.choices or any(c.chosen != "dense" for c in choices.choices):
        raise AssertionError(f"{label}: contract check 'collapse' failed: not every block was collapsed")
    with torch.no_grad():
        _close(label, "collapse", collapsed(x), y, 1e-9)
    report.checks.append("collapse")
    return report
