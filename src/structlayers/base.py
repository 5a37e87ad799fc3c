"""The contract every layer plugin satisfies, the FLOP breakdown it reports, and the dense
``nn.Linear`` form every linear plugin has."""

from __future__ import annotations

import functools
import inspect
import math
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from structlayers import flops as _flops
from structlayers.utils import precision as _precision
from structlayers.utils.memory import check_allocation

if TYPE_CHECKING:
    from structlayers.configs import Words


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one pass, split by kind; a real multiply-add counts 2 (FlopCounterMode's convention)
    and a complex one 8 (four real multiply-adds).

    ``matmul``: matrix products (mm/bmm/addmm/conv); ``fft``: the analytic cost of fast transforms;
    ``elementwise``: diagonal scalings, twiddles and bias additions.  For standard modules
    FlopCounterMode sees only the matmul part (and charges a complex matmul a quarter of its cost);
    a layer plugin reports all three kinds to it (:mod:`structlayers.flops`).
    """

    matmul: int = 0
    fft: int = 0
    elementwise: int = 0

    @property
    def total(self) -> int:
        return self.matmul + self.fft + self.elementwise

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(self.matmul + other.matmul, self.fft + other.fft, self.elementwise + other.elementwise)

    def scaled(self, factor: int) -> FlopCount:
        return FlopCount(self.matmul * factor, self.fft * factor, self.elementwise * factor)


def rows_of(batch_shape: tuple[int, ...] | int) -> int:
    """Number of vectors in a batch of shape ``batch_shape`` (every leading dimension counts)."""
    if isinstance(batch_shape, int):
        return batch_shape
    return math.prod(batch_shape)


def linear_flops(rows: int, in_features: int, out_features: int, bias: bool) -> FlopCount:
    """A dense ``x @ W.T + b`` on ``rows`` vectors."""
    return FlopCount(matmul=2 * rows * in_features * out_features, elementwise=rows * out_features if bias else 0)


class NotCollapsibleError(ValueError):
    """Raised by ``to_dense`` for a layer that is not a linear map (e.g. a stack with activations)."""


class StructuredLinear(nn.Module, ABC):
    """Base class of every layer plugin: a (possibly structured) map ``(..., in) -> (..., out)``.

    Subclasses implement ``forward``, ``to_dense`` (the exact effective weight ``(out, in)`` and
    bias, as in ``nn.Linear``), ``flop_count`` and ``params``, all analytic, so that accounting
    never relies on tracing and the test-time collapse can compare the forms' costs.
    """

    name: ClassVar[str] = ""
    #: Whether this layer can be a factor of a ``stack`` (square, no dimension change of its own).
    stackable: ClassVar[bool] = False
    #: Whether ``torch.jit.trace`` can record this layer's forward as it runs (layers with custom
    #: autograd functions cannot: tracing them raises an error that points to their export form).
    traceable: bool = True

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` calls this first: plugins dispatch in Python (FLOP counting, mixed
        precision, backends chosen by measurement), which TorchScript cannot compile."""
        raise NotImplementedError(
            f"torch.jit.script does not support layer {self.name!r} (layer plugins dispatch in Python); use "
            "torch.export, structlayers.export, or torch.jit.trace of structlayers.exportable(model)")

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Every plugin's ``forward`` is wrapped once, so that all plugins, third-party ones included,
        report their analytic FLOPs to FlopCounterMode (:mod:`structlayers.flops`) and accept
        half-precision inputs and autocast (:mod:`structlayers.utils.precision`) without code of their own."""
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if forward is not None and not getattr(forward, "_structlayers_wrapped", False):
            cls.forward = _wrap_forward(forward)

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        for label, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"layer {self.name!r}: {label} must be a positive integer, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features

    @abstractmethod
    def to_dense(self) -> tuple[Tensor, Tensor | None]:
        """``(weight, bias)`` with ``forward(x) == x @ weight.T + bias`` (weight is ``(out, in)``)."""

    @abstractmethod
    def flop_count(self, batch_shape: tuple[int, ...] | int = (1,)) -> FlopCount:
        """FLOPs of a forward pass on an input of shape ``(*batch_shape, in_features)``."""

    @abstractmethod
    def params(self) -> int:
        """Number of trainable real numbers (a complex parameter counts 2), computed analytically."""

    @classmethod
    def option_parameters(cls) -> list[inspect.Parameter]:
        """The keyword options of this layer: its constructor's parameters after ``in_features`` and
        ``out_features``, annotations resolved.  A constructor's ``**options`` stands for the options
        of the next constructor up the class hierarchy, which it passes them on to."""
        found: dict[str, inspect.Parameter] = {}
        for klass in cls.__mro__:
            init = vars(klass).get("__init__")
            if init is None:
                continue
            params = list(inspect.signature(init, eval_str=True).parameters.values())[3:]
            for p in params:
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    found.setdefault(p.name, p)
            if all(p.kind is not p.VAR_KEYWORD for p in params):
                break
        return list(found.values())

    @classmethod
    def option_types(cls, layer_options: dict[str, object]) -> dict[str, object]:
        """The annotated type of every keyword option this layer accepts when built with
        ``layer_options`` (:meth:`option_parameters`; a container that passes options on to parts
        adds theirs).  A word-valued option is annotated ``Annotated[str, Words(...)]``
        (:class:`~structlayers.configs.Words`), so a spec refuses a word the layer does not take
        when it is made, as :meth:`check_word` does when the layer is built."""
        return {p.name: typing.Any if p.annotation is p.empty else p.annotation for p in cls.option_parameters()}

    def check_word(self, option: str, value: str, words: Words) -> str:
        """``value`` of the word-valued ``option`` checked against ``words``, the vocabulary its
        annotation carries (an alias warns and is replaced by its word)."""
        return words.check(value, option, f"layer {self.name!r}")

    @property
    def is_linear(self) -> bool:
        """Whether the layer is an affine map, so ``to_dense`` is exact and it can be collapsed."""
        return True

    def flops(self, batch_shape: tuple[int, ...] | int = (1,)) -> int:
        return self.flop_count(batch_shape).total

    def backward_flop_count(
        self, batch_shape: tuple[int, ...] | int = (1,), *, input_grad: bool = True, param_grad: bool = True
    ) -> FlopCount:
        """FLOPs of the backward pass of a forward on ``(*batch_shape, in_features)``, given which
        gradients are needed.  Default: one forward's worth per gradient (the input gradient is the
        transposed map, the parameter gradients one more pass of the same size), the convention
        FlopCounterMode applies to ``nn.Linear`` (2x the forward when both are needed).  A plugin
        whose backward costs differ overrides this."""
        return self.flop_count(batch_shape).scaled(int(input_grad) + int(param_grad and self.params() > 0))

    def low_precision_native(self, rows: int, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether a call on ``rows`` vectors computed in half-precision ``dtype`` runs natively in
        that type under autocast (matmul-only layers); ``False`` (the default, always correct)
        computes in float32 and casts the result (see :mod:`structlayers.utils.precision`)."""
        return False

    def export_form(self) -> nn.Module:
        """This layer as ops that ``torch.export`` and ONNX trace (real tensors, matmuls, gathers and
        elementwise ops: no FFT, no complex numbers, no custom autograd functions), with the same
        parameters.  The default is the layer itself, for layers made of such ops; FFT layers return
        their dense-transform (matmul) form.  :func:`structlayers.export` uses it."""
        return self

    def project_(self, weight: Tensor, bias: Tensor | None) -> None:
        """Set the parameters, in place and in closed form, to (an approximation of) the dense map
        ``x @ weight.T + bias`` (``weight`` is ``(out, in)``): the starting point that
        ``replace(init_from="project" | "fit")`` gives a layer replacing a trained one.  Raises
        ``NotImplementedError`` for a family without a closed-form projection."""
        raise NotImplementedError(f"layer {self.name!r} has no closed-form projection")

    def check_dense_memory(self, bytes_per_entry: int = 24) -> None:
        """Refuse up front, with the estimate, a dense form whose ``(out, in)`` buffers
        (``bytes_per_entry`` per entry: the float64 work and the result) would not fit in the
        memory available (:func:`structlayers.utils.memory.check_allocation`)."""
        check_allocation(bytes_per_entry * self.in_features * self.out_features,
                         f"the dense form of layer {self.name!r} ({self.in_features} -> {self.out_features})")

    def check_parameter_memory(self, count: int, copies: int = 1) -> None:
        """Refuse up front, with the estimate, ``count`` parameters (made in the default dtype,
        ``copies`` buffers at a time) that would not fit in the memory available."""
        itemsize = torch.empty((), dtype=torch.get_default_dtype()).element_size()
        check_allocation(itemsize * copies * count, f"layer {self.name!r} ({self.in_features} -> "
                                                    f"{self.out_features}) with {count} parameters")

    def check_input(self, x: Tensor) -> None:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"layer {self.name!r} expects input (..., {self.in_features}), got {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _wrap_forward(forward: typing.Callable[..., Tensor]) -> typing.Callable[..., Tensor]:
    """``forward`` with the two checks every plugin call makes: an active FlopCounterMode (report
    analytic FLOPs) and a half-precision input or autocast (compute as :mod:`structlayers.utils.precision`
    says).  Both are flag tests on the fast path (C calls bound to locals, no extra Python frame)."""
    dispatch_modes = torch._C._len_torch_dispatch_stack
    any_autocast = torch._C._is_any_autocast_enabled
    tracing = torch._C._is_tracing
    low, single = _precision.LOW_PRECISION, torch.float32

    @functools.wraps(forward)
    def wrapped(self: StructuredLinear, x: Tensor, *args: object, **kwargs: object) -> Tensor:
        if not self.traceable and tracing():
            raise RuntimeError(
                f"torch.jit.trace cannot record layer {self.name!r} (its fast paths use custom autograd "
                "functions); trace structlayers.exportable(model), the same parameters in matmul form")
        if isinstance(x, Tensor):
            if dispatch_modes() and _flops.counting():
                return _flops.counted_call(self, lambda v: _call(self, forward, v, args, kwargs), x)
            dtype = x.dtype
            if dtype in low or (dtype is single and any_autocast()):
                return _precision.low_precision_call(self, lambda v: forward(self, v, *args, **kwargs), x, args,
                                                     kwargs)
        return forward(self, x, *args, **kwargs)

    wrapped._structlayers_wrapped = True  # type: ignore[attr-defined]
    return wrapped


def _call(layer: StructuredLinear, forward: typing.Callable[..., Tensor], x: Tensor, args: tuple,
          kwargs: dict) -> Tensor:
    if _precision.needs_handling(x):
        return _precision.low_precision_call(layer, lambda v: forward(layer, v, *args, **kwargs), x, args, kwargs)
    return forward(layer, x, *args, **kwargs)


def device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of ``module``'s first parameter (or buffer); CPU and the default dtype when
    it has neither."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point() or t.is_complex():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def dense_weight_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of ``module``'s parameters (float32 when it has none)."""
    return device_dtype(module)[1]


def count_params(module: nn.Module, recurse: bool = True, *, trainable: bool = False) -> int:
    """Real numbers in ``module``'s parameters (only those that require grad with ``trainable``;
    ``recurse=False``: its own, not its submodules'): a complex entry counts 2 (its real and
    imaginary parts), the convention of every plugin's analytic ``params()``."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in module.parameters(recurse=recurse)
               if p.requires_grad or not trainable)


def dense_linear(layer: StructuredLinear) -> nn.Linear:
    """An ``nn.Linear`` with ``layer``'s exact effective weight and bias, on the layer's device
    and in its dtype: the collapsed test-time form of a linear plugin.  On the ``meta`` device (no
    data) it is an ``nn.Linear`` of the right shape there, for shape and FLOP analysis."""
    device, dtype = device_dtype(layer)
    if device.type == "meta":
        if not layer.is_linear:
            raise NotCollapsibleError(f"layer {layer.name!r} is not linear: no dense form")
        bias = any(getattr(m, "bias", None) is not None for m in layer.modules())
        return nn.Linear(layer.in_features, layer.out_features, bias=bias, device=device, dtype=dtype)
    weight, bias = layer.to_dense()
    device, dtype = device_dtype(layer) if next(layer.parameters(), None) is not None else (weight.device, weight.dtype)
    linear = nn.Linear(layer.in_features, layer.out_features, bias=bias is not None, device=device, dtype=dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


@runtime_checkable
class Fusable(Protocol):
    """A square factor that a stack can chain without leaving its internal ordering.

    The factor computes ``y = core((x * scale)[order])[inverse] + bias`` where ``order`` /
    ``inverse`` are a fixed permutation pair (for ACDC, Makhoul's DCT reordering) shared by every
    factor of the same size.  A :class:`~structlayers.layers.stack.Stack` of such factors composes
    the output gather of one factor, the shuffle and the input gather of the next into a single
    permutation (one pass over memory per junction instead of three).
    """

    bias: Tensor | None

    def fusion_scale(self) -> Tensor:
        """The input diagonal ``scale`` (natural order), a view of the parameter so gradients flow."""

    def fusion_perms(self) -> tuple[Tensor, Tensor] | None:
        """``(order, inverse)`` over the square size, or ``None`` when this factor's options rule
        fusion out for every call (e.g. an inner shuffle or the dense backend)."""

    def fusable(self, rows: int, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether the fused path runs for a call on ``rows`` vectors."""

    def fused_core(self, v: Tensor) -> Tensor:
        """The factor's map between the two gathers, on rows already in ``order``."""


@runtime_checkable
class Cascading(Protocol):
    """A square factor whose map is ``out(g(x))``: ``g`` is linear over a wider signal (AFDF's is
    complex) and ``out`` maps it back to a real one.  When :meth:`cascades` is true, a
    :class:`~structlayers.layers.stack.Stack` of such factors carries the wide signal from factor
    to factor and applies ``out`` once, after the last one (the complex AFDF cascade of Moczulski
    et al., 2016, Sec. 4); otherwise every factor applies its own ``out``, as it does alone.
    """

    def cascades(self) -> bool:
        """Whether this factor's options ask a stack to carry the wide signal between factors."""

    def cascade_forward(self, z: Tensor) -> Tensor:
        """``g(z) (+ bias)`` on a real or wide input ``(..., size)``, without ``out``."""

    def cascade_reference(self, z: Tensor) -> Tensor:
        """``g(z) (+ bias)`` in double precision on CPU (the unfused reference of ``to_dense``)."""

    def cascade_output(self, z: Tensor) -> Tensor:
        """``out``: the wide signal mapped back to a real one (AFDF: the real part)."""

    def cascade_flop_count(self, rows: int, wide_input: bool) -> FlopCount:
        """FLOPs of :meth:`cascade_forward` on ``rows`` vectors, real or wide ones."""
