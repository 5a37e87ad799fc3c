"""Model surgery: swap a model's dense layers for layer plugins.

Three kinds of module can be replaced:

- ``linear``: ``nn.Linear(in, out)`` -> ``create(layer, in, out)``;
- ``pointwise``: a 1x1 ``nn.Conv1d/2d/3d`` (any stride, no padding, ``groups=1``) ->
  :class:`PointwiseConv` applying the plugin over channels at every position;
- ``separable``: a k x k convolution (``groups=1``) -> :class:`SeparableConv`, a depthwise k x k
  convolution followed by a structured pointwise one (MobileNet's factorisation, Howard et al., 2017,
  with the pointwise step structured).

Selection: ``targets`` lists kinds, module types (``nn.Conv2d``...) and name globs
(``"layer3.*"``); a module is replaced when it matches one kind or type (``linear`` and
``pointwise`` when none is named) and, if globs are given, one glob.  ``skip_first`` /
``skip_last`` keep the model's first / last N layers (``nn.Linear`` or convolutions, in execution
order when an example input is given, else definition order) dense whatever the selection.
Matching modules that cannot be replaced faithfully (grouped or transposed convolutions, padded
1x1 convolutions, projections that ``nn.MultiheadAttention`` reads directly, modules the example
input never calls) are skipped with a warning naming each, or raise with ``on_unsupported="error"``.

Sharing is kept: a module reachable under several names (``self.b = self.a``) is replaced once and
the one replacement is installed under every name; modules that are different objects but share
all their parameters and settings (tied copies) get one shared replacement too.  A module whose
parameters are tied to a module that is not replaced with it, or not in the same way (an
embedding / output-head tie, a shared weight with separate biases), is unsupported: replacing it
would untie them silently.  Parents that compute with their children's ``weight`` directly in a
fused kernel (the inference fast paths of ``nn.TransformerEncoderLayer`` and the nested-tensor path
of ``nn.TransformerEncoder``) are switched to their regular path, which calls the replacement.
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from structlayers.accounting import count
from structlayers.base import StructuredLinear, count_params, device_dtype
from structlayers.collapse import _set_submodule
from structlayers.configs import Words
from structlayers.registry import accepted_options, create, get, resolve
from structlayers.surgery.fit import FitOptions, fit_layer
from structlayers.surgery.report import Replacement, ReplaceReport, Skipped
from structlayers.surgery.wrappers import PointwiseConv, SeparableConv
from structlayers.utils.tracing import run_example

KINDS = ("linear", "pointwise", "separable")
DEFAULT_KINDS = ("linear", "pointwise")
KEPT = "kept dense by skip_first / skip_last"
Target = str | type[nn.Module]


class UnsupportedModuleError(ValueError):
    """A module selected for replacement cannot be replaced faithfully."""


#: How replacements are fitted to the trained dense weights (``init_from="fit"``) unless told
#: otherwise: L-BFGS, 200 steps per layer (a model has many layers; each starts from its projection).
REPLACE_FIT = FitOptions(steps=200)


def classify(module: nn.Module) -> tuple[str | None, str]:
    """``(kind, reason)``: the replacement kind of ``module`` (``None`` if not a layer), or
    ``"unsupported"`` with the reason it cannot be replaced."""
    if isinstance(module, nn.Linear):
        if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
            return "unsupported", "lazy module with uninitialised parameters (run a forward pass first)"
        return "linear", ""
    if not isinstance(module, nn.modules.conv._ConvNd):
        return None, ""
    if module.transposed:
        return "unsupported", "transposed convolutions are not supported"
    if module.groups != 1:
        return "unsupported", f"grouped convolution (groups={module.groups}) is already structured"
    if all(k == 1 for k in module.kernel_size):
        if not isinstance(module.padding, str) and any(p != 0 for p in module.padding):
            return "unsupported", (f"1x1 convolution with padding {module.padding} "
                                   "(its border outputs are the bias alone)")
        return "pointwise", ""
    return "separable", ""


def _selected(module: nn.Module, kind: str, kinds: set[str], types: tuple[type, ...]) -> bool:
    """Whether ``targets`` select ``module``; an unsupported module is selected when the kind it
    would have (``linear``, ``pointwise`` for 1x1 kernels, else ``separable``) is."""
    if isinstance(module, types):
        return True
    if kind == "unsupported":
        if isinstance(module, nn.Linear):
            kind = "linear"
        else:
            kind = "pointwise" if all(k == 1 for k in module.kernel_size) else "separable"
    return kind in kinds


def _layer_options(layer: str, layer_options: dict[str, Any], bias: bool) -> dict[str, Any]:
    """``layer_options`` plus ``bias`` matching the original module, when the plugin takes one."""
    if "bias" in layer_options or "bias" not in accepted_options(layer, layer_options):
        return layer_options
    return {**layer_options, "bias": bias}


def _to_like(new: nn.Module, old: nn.Module) -> nn.Module:
    device, dtype = device_dtype(old)
    return new.to(device=device, dtype=dtype)


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features}->{module.out_features})"
    if isinstance(module, nn.modules.conv._ConvNd):
        k = "x".join(map(str, module.kernel_size))
        stride = f", s{module.stride[0]}" if any(s != 1 for s in module.stride) else ""
        return f"{type(module).__name__}({module.in_channels}->{module.out_channels}, {k}{stride})"
    if isinstance(module, PointwiseConv):
        inner = _describe(module.layer)
        stride = f", s{module.stride[0]}" if any(s != 1 for s in module.stride) else ""
        return f"pointwise[{inner}{stride}]"
    if isinstance(module, SeparableConv):
        k = "x".join(map(str, module.depthwise.kernel_size))
        return f"depthwise {k} + {_describe(module.pointwise)}"
    if isinstance(module, StructuredLinear):
        extra = f", depth {module.depth}" if hasattr(module, "depth") else ""
        factor = f"[{module.factor}]" if hasattr(module, "factor") else ""
        return f"{module.name}{factor}({module.in_features}->{module.out_features}{extra})"
    return type(module).__name__


#: Where replacements start (``init_from``): the same words in the API, run configurations and command lines.
INITS = ("scratch", "project", "fit")
#: Old words for them, accepted with a warning (``random`` was the command line's ``scratch``).
INIT_ALIASES = {"random": "scratch"}


def check_init_from(init_from: str) -> str:
    """``init_from`` checked against :data:`INITS`; a deprecated word (:data:`INIT_ALIASES`) warns
    and is replaced by its word."""
    return Words(INITS, INIT_ALIASES).check(init_from, "init_from")


@dataclass(frozen=True)
class _Init:
    """How replacements start: ``mode`` (one of :data:`INITS`) and the fit's options."""

    mode: str
    fit: FitOptions


def _fit(plugin: nn.Module, weight: Tensor, bias: Tensor | None, init: _Init) -> tuple[float, str]:
    """Initialise ``plugin`` from the dense ``weight`` / ``bias`` as ``init`` says; return the
    relative Frobenius error of its weight and what was done."""
    weight = weight.detach()
    bias = None if bias is None else bias.detach()
    done = []
    try:
        plugin.project_(weight, bias)
        done.append("projected")
    except NotImplementedError:
        if init.mode == "project":
            warnings.warn(f"structlayers.replace: {_describe(plugin)} has no closed-form projection; it keeps its "
                          "own initialisation (use init_from='fit' to fit it iteratively)", stacklevel=4)
            done.append("no projection")
    if init.mode == "fit":
        with torch.enable_grad():
            fit_layer(plugin, weight, bias, init.fit)
        done.append("fitted")
    fitted, _ = plugin.to_dense()
    error = float(torch.linalg.norm(fitted.double().cpu() - weight.double().cpu())
                  / torch.linalg.norm(weight.double().cpu()).clamp_min(1e-30))
    return error, "+".join(done)


def separable_factors(weight: Tensor) -> tuple[Tensor, Tensor]:
    """The best depthwise-separable approximation of a convolution kernel ``(out, in, *k)``:
    depthwise filters ``(in, 1, *k)`` and a pointwise matrix ``(out, in)`` with
    ``weight[o, i] ~ pointwise[o, i] * depthwise[i, 0]``, optimal in Frobenius norm (a rank-1 SVD
    of each input channel's ``(out, k*k)`` slice; the scale is split evenly between the two)."""
    out_c, in_c, *k = weight.shape
    slices = weight.detach().double().reshape(out_c, in_c, -1).permute(1, 0, 2)
    u, s, vh = torch.linalg.svd(slices, full_matrices=False)
    root = s[:, 0].sqrt()
    depthwise = (root[:, None] * vh[:, 0, :]).reshape(in_c, 1, *k)
    pointwise = (root[:, None] * u[:, :, 0]).T
    return depthwise.to(weight.dtype), pointwise.to(weight.dtype).contiguous()


def _build(module: nn.Module, kind: str, layer: str, layer_options: dict[str, Any],
           fit: _Init | None) -> tuple[nn.Module, tuple[float, str] | None]:
    """The replacement of ``module`` and, when initialised from it, its relative weight error and
    how it was initialised."""
    bias = module.bias if getattr(module, "bias", None) is not None else None
    n_in, n_out = ((module.in_features, module.out_features) if kind == "linear"
                   else (module.in_channels, module.out_channels))
    plugin = _to_like(create(layer, n_in, n_out, **_layer_options(layer, layer_options, bias is not None)), module)
    if fit and not plugin.is_linear:
        raise ValueError(f"init_from={fit.mode!r} needs a linear layer; {_describe(plugin)} is nonlinear "
                         "(activation or norm)")
    if kind == "linear":
        return plugin, _fit(plugin, module.weight, bias, fit) if fit else None
    dims = len(module.kernel_size)
    if kind == "pointwise":
        error = _fit(plugin, module.weight.reshape(n_out, n_in), bias, fit) if fit else None
        return PointwiseConv(plugin, n_in, n_out, dims, module.stride), error
    depthwise = _to_like(
        type(module)(module.in_channels, module.in_channels, module.kernel_size, stride=module.stride,
                     padding=module.padding, dilation=module.dilation, groups=module.in_channels, bias=False,
                     padding_mode=module.padding_mode),
        module,
    )
    new = SeparableConv(depthwise, PointwiseConv(plugin, n_in, n_out, dims))
    if not fit:
        return new, None
    dw, pw = separable_factors(module.weight)
    with torch.no_grad():
        depthwise.weight.copy_(dw)
    _, how = _fit(plugin, pw, bias, fit)
    fitted, _ = plugin.to_dense()
    approx = fitted.to(dw.dtype).cpu()[:, :, None] * dw.cpu().reshape(n_in, -1)[None]
    target = module.weight.detach().cpu().reshape(approx.shape)
    return new, (float(torch.linalg.norm(approx - target) / torch.linalg.norm(target)), how)


def _split_targets(targets: Target | Sequence[Target]) -> tuple[set[str], tuple[type, ...], list[str]]:
    items = [targets] if isinstance(targets, (str, type)) else list(targets)
    kinds: set[str] = set()
    types: list[type] = []
    globs: list[str] = []
    for item in items:
        if isinstance(item, type):
            if not issubclass(item, nn.Module):
                raise TypeError(f"target type {item!r} is not an nn.Module subclass")
            types.append(item)
        elif item == "all":
            kinds.update(KINDS)
        elif item in KINDS:
            kinds.add(item)
        elif isinstance(item, str):
            globs.append(item)
        else:
            raise TypeError(f"targets must be kinds {KINDS}, module types or name globs, got {item!r}")
    if not kinds and not types:
        kinds.update(DEFAULT_KINDS)
    return kinds, tuple(types), globs


def _aliases(model: nn.Module) -> dict[int, list[str]]:
    """Every name under which each module object is reachable, by ``id``."""
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(name)
    return names


def _tied(model: nn.Module) -> dict[int, set[int]]:
    """For each module (by ``id``), the other module objects holding one of its own parameters."""
    owners: dict[int, set[int]] = {}
    for module in {id(m): m for m in model.modules()}.values():
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), set()).add(id(module))
    partners: dict[int, set[int]] = {}
    for group in owners.values():
        for m in group:
            partners.setdefault(m, set()).update(group - {m})
    return partners


def _same_function(a: nn.Module, b: nn.Module) -> bool:
    """Whether two module objects compute the same map: same class and settings, and the very same
    parameter objects."""
    pa, pb = dict(a.named_parameters(recurse=False)), dict(b.named_parameters(recurse=False))
    return (type(a) is type(b) and a.extra_repr() == b.extra_repr() and pa.keys() == pb.keys()
            and all(pa[k] is pb[k] for k in pa))


def _fast_path_guard(module: nn.Module, args: Any) -> None:
    """A no-op forward pre-hook: torch's fused Transformer kernels skip modules with hooks."""
    return None


def _disable_fused_parents(model: nn.Module, names: Sequence[str]) -> None:
    """Make the parents of replaced modules that would read their ``weight`` in a fused kernel
    call them instead (see the module docs)."""
    for name in names:
        parts = name.split(".")
        for depth in range(len(parts)):
            parent = model.get_submodule(".".join(parts[:depth]))
            if isinstance(parent, nn.TransformerEncoder):
                parent.use_nested_tensor = False
            if isinstance(parent, nn.TransformerEncoderLayer) and depth == len(parts) - 1:
                child = model.get_submodule(name)
                if _fast_path_guard not in child._forward_pre_hooks.values():
                    child.register_forward_pre_hook(_fast_path_guard)


def _call_order(model: nn.Module, layers: dict[str, nn.Module], example_input: Any) -> list[str]:
    """Names of ``layers`` in the order ``example_input`` first calls them (uncalled ones omitted)."""
    order: list[str] = []
    handles = [
        m.register_forward_pre_hook(lambda _m, _a, name=name: order.append(name) if name not in order else None)
        for name, m in layers.items()
    ]
    try:
        run_example(model, example_input)
    finally:
        for h in handles:
            h.remove()
    return order


def _resolve_ties(model: nn.Module, plan: list[tuple[str, nn.Module, str]],
                  report: ReplaceReport) -> list[tuple[str, nn.Module, str, list[nn.Module]]]:
    """Group planned modules that are tied copies of each other (one shared replacement) and move
    those tied to anything else to ``report.skipped``; ``(name, module, kind, tied copies)``."""
    partners = _tied(model)
    modules = {id(m): m for m in model.modules()}
    names = {id(m): n for n, m in model.named_modules()}
    planned = {id(m): (n, k) for n, m, k in plan}
    while True:  # dropping one module can leave a tied copy of it without its partner
        bad = {i for i in planned if any(j not in planned or not _same_function(modules[i], modules[j])
                                         for j in partners.get(i, ()))}
        if not bad:
            break
        for i in bad:
            name, _ = planned.pop(i)
            others = sorted(names[j] for j in partners[i])
            report.skipped.append(Skipped(name, _describe(modules[i]),
                                          f"its parameters are shared with {', '.join(others)}, which would be untied"))
    grouped: list[tuple[str, nn.Module, str, list[nn.Module]]] = []
    done: set[int] = set()
    for name, module, kind in plan:
        if id(module) in planned and id(module) not in done:
            copies = [modules[j] for j in sorted(partners.get(id(module), ()), key=lambda j: names[j])]
            done.update({id(module), *map(id, copies)})
            grouped.append((name, module, kind, copies))
    return grouped


def replace(
    model: nn.Module,
    layer: str = "acdc",
    targets: Target | Sequence[Target] = DEFAULT_KINDS,
    *,
    skip_first: int = 0,
    skip_last: int = 0,
    init_from: Literal["scratch", "project", "fit"] = "scratch",
    fit: FitOptions | None = None,
    example_input: Any = None,
    on_unsupported: Literal["warn", "error"] = "warn",
    inplace: bool = False,
    depth: int | None = None,
    **layer_options: Any,
) -> tuple[nn.Module, ReplaceReport]:
    """Swap the modules of ``model`` selected by ``targets`` for ``layer`` plugins (built with
    ``depth`` and ``layer_options`` by :func:`structlayers.create`, so ``"acdc", depth=12`` is a
    stack of 12 ACDC factors) and report the change (see the module docs).

    ``init_from="scratch"`` keeps the plugin's own initialisation; ``"project"`` sets each
    replacement in closed form from the module's trained weights (the plugin's ``project_``: a copy,
    a truncated SVD, diagonal blocks, alternating diagonal least squares...; a family without one
    keeps its initialisation, with a warning); ``"fit"`` projects where possible and then fits
    iteratively with :func:`structlayers.surgery.fit_layer` (``fit`` sets steps, optimizer and
    learning rate), so a pretrained model can be compressed.  With ``example_input``
    the report includes exact FLOPs (from :func:`structlayers.count`) and first / last layers are
    found in execution order.  ``model`` is copied unless ``inplace``.
    """
    layer, layer_options = resolve(layer, depth, **layer_options)
    get(layer)
    init_from = check_init_from(init_from)
    if on_unsupported not in ("warn", "error"):
        raise ValueError(f"on_unsupported must be 'warn' or 'error', got {on_unsupported!r}")
    for label, value in (("skip_first", skip_first), ("skip_last", skip_last)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
    kinds, types, globs = _split_targets(targets)
    fit_options = _Init(init_from, fit or REPLACE_FIT) if init_from != "scratch" else None
    model = model if inplace else copy.deepcopy(model)

    layers: dict[str, nn.Module] = {}
    plugins: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(p + ".") for p in plugins):
            continue
        if isinstance(module, StructuredLinear):
            plugins.append(name)
        if classify(module)[0] is not None:
            layers[name] = module
    called = _call_order(model, layers, example_input) if example_input is not None else None
    order = called + [n for n in layers if n not in called] if called is not None else list(layers)
    kept = set(order[:skip_first]) | set(order[len(order) - skip_last :] if skip_last else ())
    before = count(model, example_input) if example_input is not None else None

    report = ReplaceReport(layer=layer, total_params_before=count_params(model))
    plan: list[tuple[str, nn.Module, str]] = []
    for name in order:
        module = layers[name]
        kind, reason = classify(module)
        if not _selected(module, kind, kinds, types) or (
                globs and not any(fnmatch.fnmatchcase(name, g) for g in globs)):
            continue
        if name in kept:
            report.skipped.append(Skipped(name, _describe(module), KEPT))
            continue
        parent = model.get_submodule(name.rpartition(".")[0])
        if kind != "unsupported" and isinstance(parent, nn.MultiheadAttention):
            kind, reason = ("unsupported",
                            "nn.MultiheadAttention reads this projection's weight directly, not through forward")
        if kind != "unsupported" and called is not None and name not in called:
            kind, reason = "unsupported", "never called by the model on the example input"
        if kind == "unsupported":
            report.skipped.append(Skipped(name, _describe(module), reason))
        else:
            plan.append((name, module, kind))

    groups = _resolve_ties(model, plan, report)
    unsupported = [s for s in report.skipped if s.reason != KEPT]
    if unsupported:
        detail = "; ".join(f"{s.name} ({s.module}): {s.reason}" for s in unsupported)
        if on_unsupported == "error":
            raise UnsupportedModuleError(f"cannot replace {len(unsupported)} selected module(s): {detail}")
        warnings.warn(f"structlayers.replace: skipped {len(unsupported)} module(s) that cannot be replaced: {detail}",
                      stacklevel=2)
    if not groups and not report.skipped:
        raise ValueError(
            f"no module of {model.__class__.__name__} matches targets {targets!r}; "
            f"replaceable modules: {', '.join(f'{n} ({classify(m)[0]})' for n, m in layers.items()) or 'none'}"
        )

    aliases = _aliases(model)
    installed: list[str] = []
    for name, module, kind, tied in groups:
        new, init = _build(module, kind, layer, layer_options, fit_options)
        new.train(module.training)
        names = [n for m in (module, *tied) for n in aliases[id(m)]]
        for target in names:
            model = _set_submodule(model, target, new)
        installed += names
        report.replaced.append(Replacement(name, kind, _describe(module), _describe(new), count_params(module),
                                           count_params(new), fit_error=None if init is None else init[0],
                                           init="scratch" if init is None else init[1], aliases=names[1:]))
    _disable_fused_parents(model, installed)

    report.total_params_after = count_params(model)
    if before is not None:
        after = count(model, example_input)
        for r in report.replaced:
            r.flops_before = before.by_prefix(r.name)[1]
            r.flops_after = after.by_prefix(r.name)[1]
        report.total_flops_before, report.total_flops_after = before.total_flops, after.total_flops
    return model, report
