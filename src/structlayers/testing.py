"""The plugin contract as a reusable check, for third-party plugin authors and for our own suite.

>>> from structlayers.testing import check_layer
>>> report = check_layer("acdc", 12, 7, groups=2)      # raises AssertionError on a broken contract
>>> report.checks  # doctest: +NORMALIZE_WHITESPACE
['shapes', 'empty', 'to_dense', 'params', 'flops', 'flop_counter', 'precision', 'state_dict',
 'gradcheck', 'collapse', 'export', 'stack']

Like e3nn's ``assert_equivariant``, it is meant to be called from a plugin package's tests with the
plugin's own options.  What it checks, in float64 on CPU:

- ``shapes``: ``(..., in) -> (..., out)`` for an unbatched vector, a batch and a batch of batches;
- ``empty``: a batch of no rows (``(0, in)``, ``(2, 0, in)``) gives an empty ``(..., out)`` output,
  and a backward pass through it works (a data loader's last, empty shard; a filtered batch);
- ``to_dense``: ``forward(x) == x @ W.T + b`` for a linear layer; a nonlinear one raises
  :class:`~structlayers.base.NotCollapsibleError`;
- ``params``: the analytic ``params()`` equals the number of trainable real numbers;
- ``flops``: ``flops()`` is the total of ``flop_count()``, is positive, and grows linearly with rows;
- ``flop_counter``: :class:`torch.utils.flop_counter.FlopCounterMode` sees exactly ``flops()`` for a
  forward pass and ``flops() + backward_flop_count()`` for a forward and backward pass
  (:mod:`structlayers.flops`);
- ``precision``: a float32 instance maps float16 / bfloat16 inputs to outputs of the same dtype, and
  float32 inputs under ``torch.autocast("cpu", torch.bfloat16)`` to bfloat16 ones, and an instance
  cast to bfloat16 (``layer.to(torch.bfloat16)``) maps bfloat16 inputs to bfloat16 outputs, each
  within :data:`PRECISION_TOLERANCE` (relative Frobenius error) of the float64 outputs;
- ``state_dict``: a second instance built with the same options reproduces the outputs after
  ``load_state_dict`` (buffers such as fixed permutations included);
- ``gradcheck``: autograd's gradients with respect to the input and every parameter match finite
  differences (``torch.autograd.gradcheck``);
- ``collapse``: :func:`structlayers.collapse` forced to the dense form gives the same outputs;
- ``export``: both export forms (``dense-dct``, ``collapsed``) through ``torch.export`` and, with the
  ``export`` extra installed, ONNX (run by ``onnxruntime`` when present) give the same outputs;
- ``stack``: a stackable layer works as a factor of a depth-2 ``stack`` (forward, ``to_dense``,
  collapse), which needs it registered (:func:`structlayers.register` or an entry point).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from structlayers.base import NotCollapsibleError, StructuredLinear, count_params, dense_linear
from structlayers.collapse import collapse
from structlayers.registry import available, create

#: Largest relative Frobenius error of a half-precision call against float64 that ``precision``
#: accepts: a few roundings to the type's precision (2^-8 for bfloat16, 2^-11 for float16) per
#: matmul, for the small layers the contract builds.
PRECISION_TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 5e-3}


@dataclass
class LayerReport:
    """The checks that ran on one layer configuration, in order."""

    layer: str
    in_features: int
    out_features: int
    options: dict[str, Any]
    checks: list[str] = field(default_factory=list)


class _Checker:
    def __init__(self, build: Any, label: str, in_features: int, out_features: int, seed: int) -> None:
        self.build, self.label = build, label
        self.in_features, self.out_features, self.seed = in_features, out_features, seed

    def fail(self, check: str, message: str) -> None:
        raise AssertionError(f"{self.label}: contract check {check!r} failed: {message}")

    def close(self, check: str, got: Tensor, expected: Tensor, what: str, tol: float = 1e-9) -> None:
        if got.shape != expected.shape:
            self.fail(check, f"{what}: shape {tuple(got.shape)} != {tuple(expected.shape)}")
        scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
        err = float((got - expected).abs().max()) if expected.numel() else 0.0
        if not err <= tol * scale:
            self.fail(check, f"{what}: max abs difference {err:.3g} (tolerance {tol * scale:.3g})")

    def inputs(self, *batch: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed)
        return torch.randn(*batch, self.in_features, generator=g, dtype=torch.float64)


def _new(build: Any, seed: int) -> StructuredLinear:
    torch.manual_seed(seed)
    return build().double()


def _check_precision(c: _Checker, module: StructuredLinear) -> None:
    x = c.inputs(4)
    with torch.no_grad():
        reference = module(x)
        single = _new(c.build, c.seed).float()
        single.load_state_dict(module.state_dict())
        single.eval()
        x32 = x.float()
        runs = {f"{dtype} input": (dtype, lambda dtype=dtype: single(x32.to(dtype))) for dtype in PRECISION_TOLERANCE}

        def autocast_run() -> Tensor:
            with torch.autocast("cpu", torch.bfloat16):
                return single(x32)

        runs["float32 input under autocast(bfloat16)"] = (torch.bfloat16, autocast_run)
        half = _new(c.build, c.seed).to(torch.bfloat16)  # bfloat16 parameters, not only inputs
        half.load_state_dict(module.state_dict())
        half.eval()
        runs["bfloat16 parameters and input"] = (torch.bfloat16, lambda: half(x32.to(torch.bfloat16)))
        for what, (dtype, run) in runs.items():
            y = run()
            if y.dtype != dtype:
                c.fail("precision", f"{what}: output dtype {y.dtype}, expected {dtype}")
            err = float(torch.linalg.norm(y.double() - reference) / max(float(torch.linalg.norm(reference)), 1e-12))
            if not err <= PRECISION_TOLERANCE[dtype]:
                c.fail("precision", f"{what}: relative error {err:.3g} vs float64 exceeds {PRECISION_TOLERANCE[dtype]}")


def _check_export(c: _Checker, module: StructuredLinear) -> None:
    """Both export forms through ``torch.export`` and, with the ``export`` extra (``onnx``), ONNX
    (run by ``onnxruntime`` when it is installed), each matching the float32 layer."""
    import importlib.util
    import tempfile
    from pathlib import Path

    from structlayers.export import FORMS, export

    single = _new(c.build, c.seed).float().eval()
    single.load_state_dict(module.state_dict())
    model = nn.Sequential(single)
    x = c.inputs(4).float()
    with torch.no_grad():
        expected = model(x)
    onnx = importlib.util.find_spec("onnx") is not None
    runtime = onnx and importlib.util.find_spec("onnxruntime") is not None
    for form in FORMS:
        try:
            program = export(model, x, "torch.export", form)
            with torch.no_grad():
                c.close("export", program.module()(x), expected, f"torch.export ({form}) outputs", tol=1e-4)
            if onnx:
                with tempfile.TemporaryDirectory() as folder:
                    path = export(model, x, "onnx", form, Path(folder) / "layer.onnx")
                    if runtime:
                        import onnxruntime

                        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                        got = torch.from_numpy(session.run(None, {"input0": x.numpy()})[0])
                        c.close("export", got, expected, f"ONNX ({form}) outputs", tol=1e-4)
        except AssertionError:
            raise
        except Exception as err:  # exporters raise many types
            c.fail("export", f"form {form!r} raised {type(err).__name__}: {str(err).strip().splitlines()[0]}")


def check_layer(
    layer: str | type[StructuredLinear],
    in_features: int = 12,
    out_features: int = 12,
    *,
    seed: int = 0,
    gradcheck: bool = True,
    stack: bool = True,
    export: bool = True,
    **options: Any,
) -> LayerReport:
    """Check the plugin contract (see the module docs) for ``layer`` (a registered name or a
    :class:`~structlayers.base.StructuredLinear` subclass) built as ``(in_features, out_features,
    **options)``; raise ``AssertionError`` naming the failed check, else return what ran."""
    if isinstance(layer, str):
        name = layer

        def build() -> StructuredLinear:
            return create(name, in_features, out_features, **options)
    else:
        name = layer.name or layer.__qualname__

        def build() -> StructuredLinear:
            return layer(in_features, out_features, **options)

    label = f"layer {name!r} ({in_features} -> {out_features}{''.join(f', {k}={v!r}' for k, v in options.items())})"
    c = _Checker(build, label, in_features, out_features, seed)
    report = LayerReport(name, in_features, out_features, dict(options))
    module = _new(build, seed)
    if not isinstance(module, StructuredLinear):
        c.fail("type", f"built a {type(module).__name__}, not a StructuredLinear")
    module.eval()

    # shapes
    for batch in ((), (3,), (2, 3)):
        with torch.no_grad():
            y = module(c.inputs(*batch))
        if tuple(y.shape) != (*batch, out_features):
            c.fail("shapes", f"input {(*batch, in_features)} gave output {tuple(y.shape)}, "
                             f"expected {(*batch, out_features)}")
        if not torch.isfinite(y).all():
            c.fail("shapes", f"non-finite outputs for input shape {(*batch, in_features)}")
    report.checks.append("shapes")

    # empty
    for batch in ((0,), (2, 0)):
        empty = c.inputs(*batch).requires_grad_(True)
        module.train()
        try:
            y = module(empty)
            y.sum().backward()
        except Exception as err:  # FFT backends raise RuntimeError on empty transforms
            c.fail("empty", f"input {tuple(empty.shape)} raised {type(err).__name__}: {str(err).splitlines()[0]}")
        finally:
            module.eval()
            module.zero_grad(set_to_none=True)
        if tuple(y.shape) != (*batch, out_features):
            c.fail("empty", f"input {tuple(empty.shape)} gave output {tuple(y.shape)}, "
                            f"expected {(*batch, out_features)}")
    report.checks.append("empty")

    # to_dense
    x = c.inputs(5)
    with torch.no_grad():
        y = module(x)
    if module.is_linear:
        weight, bias = module.to_dense()
        if tuple(weight.shape) != (out_features, in_features):
            c.fail("to_dense", f"weight shape {tuple(weight.shape)}, expected {(out_features, in_features)}")
        dense = x @ weight.double().T + (bias.double() if bias is not None else 0.0)
        c.close("to_dense", y, dense, "forward vs to_dense()", tol=1e-8)
    else:
        try:
            module.to_dense()
        except NotCollapsibleError:
            pass
        else:
            c.fail("to_dense", "a nonlinear layer (is_linear False) must raise NotCollapsibleError from to_dense()")
    report.checks.append("to_dense")

    # params
    trainable = count_params(module, trainable=True)
    if module.params() != trainable:
        c.fail("params", f"params() = {module.params()}, but the module has {trainable} trainable numbers")
    report.checks.append("params")

    # flops
    counts = {rows: module.flop_count(rows) for rows in (1, 4, 8)}
    if any(module.flops(rows) != fc.total for rows, fc in counts.items()):
        c.fail("flops", "flops(rows) differs from flop_count(rows).total")
    if counts[1].total <= 0:
        c.fail("flops", f"flops(1) = {counts[1].total}, expected a positive count")
    if counts[8].total != 2 * counts[4].total or module.flops((2, 4)) != counts[8].total:
        c.fail("flops", f"FLOPs are not linear in the number of rows: {counts[4].total} for 4, {counts[8].total} for 8")
    report.checks.append("flops")

    # flop_counter
    batch = (2, 3)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(c.inputs(*batch))
    if counter.get_total_flops() != module.flops(batch):
        c.fail("flop_counter", f"FlopCounterMode saw {counter.get_total_flops()} FLOPs in forward, "
                               f"flops() = {module.flops(batch)}")
    has_params = any(p.requires_grad for p in module.parameters())
    expected = module.flops(batch) + module.backward_flop_count(batch, input_grad=True, param_grad=has_params).total
    with FlopCounterMode(display=False) as counter:
        module(c.inputs(*batch).requires_grad_(True)).sum().backward()
    module.zero_grad(set_to_none=True)
    if counter.get_total_flops() != expected:
        c.fail("flop_counter", f"FlopCounterMode saw {counter.get_total_flops()} FLOPs in forward + backward, "
                               f"flops() + backward_flop_count() = {expected}")
    report.checks.append("flop_counter")

    # precision
    _check_precision(c, module)
    report.checks.append("precision")

    # state_dict
    other = _new(build, seed + 1)
    try:
        other.load_state_dict(module.state_dict())
    except RuntimeError as err:
        c.fail("state_dict", f"load_state_dict into a fresh instance failed: {err}")
    other.eval()
    with torch.no_grad():
        c.close("state_dict", other(x), y, "outputs after load_state_dict", tol=1e-12)
    report.checks.append("state_dict")

    # gradcheck
    if gradcheck:
        names = [n for n, p in module.named_parameters() if p.requires_grad]
        params = [p.detach().clone().requires_grad_(True) for n, p in module.named_parameters() if p.requires_grad]
        probe = c.inputs(2).requires_grad_(True)
        module.train()

        def f(inp: Tensor, *values: Tensor) -> Tensor:
            return torch.func.functional_call(module, dict(zip(names, values)), (inp,))

        try:
            torch.autograd.gradcheck(f, (probe, *params), eps=1e-6, atol=1e-5, rtol=1e-4)
        except Exception as err:  # gradcheck raises GradcheckError or a backend error
            c.fail("gradcheck", str(err).splitlines()[0])
        module.eval()
        report.checks.append("gradcheck")

    # collapse
    if module.is_linear:
        prefer_dense = lambda _layer, _rows, form: 0.0 if form == "dense" else 1.0
        collapsed, choice = collapse(nn.Sequential(module), x, cost=prefer_dense)
        if choice.choices[0].chosen != "dense":
            c.fail("collapse", "collapse() kept the structured form although the dense one was cheaper")
        with torch.no_grad():
            c.close("collapse", collapsed(x), y, "collapsed model outputs", tol=1e-8)
            c.close("collapse", dense_linear(module)(x), y, "dense_linear outputs", tol=1e-8)
        report.checks.append("collapse")

    # export
    if export:
        _check_export(c, module)
        report.checks.append("export")

    # stack
    if stack and type(module).stackable:
        if name not in available() or available()[name] is not type(module):
            c.fail("stack", f"stackable layer {name!r} must be registered (structlayers.register or an entry point) "
                            "to be a stack factor")
        check_layer("stack", in_features, out_features, seed=seed, gradcheck=False, stack=False, export=export,
                    factor=name, depth=2, **options)
        report.checks.append("stack")
    return report
