"""Mixed precision for layer plugins: float16 / bfloat16 inputs and ``torch.autocast``.

A layer called on a half-precision input, or on a float32 input under autocast to a half-precision
type, returns that half-precision type (under autocast, like ``nn.Linear``; otherwise the input's
dtype: dtype in, dtype out).  How it computes depends on the layer
(:meth:`~structlayers.base.StructuredLinear.low_precision_native`):

- ``native``: its matmuls run in the low-precision type under autocast (the dense-DCT backend,
  dense, low-rank and block-diagonal layers);
- otherwise in float32, with autocast off inside and the result cast back.  This is the FFT path:
  ``torch.fft`` has no bfloat16 kernels and float16 ones only on CUDA for power-of-two sizes, and
  the spectral products lose most of their accuracy in half precision anyway.

The same code runs on every device type: the autocast context is the input's device's.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)
_AUTOCASTABLE = (torch.float32, *LOW_PRECISION)


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype a layer computes ``x`` in: the autocast type of ``x``'s device when autocast is
    on and ``x`` is float32 or half precision, else ``x.dtype``."""
    if x.dtype in _AUTOCASTABLE and torch._C._is_any_autocast_enabled():
        device_type = x.device.type
        if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    return x.dtype


def needs_handling(x: Tensor) -> bool:
    """Whether a call on ``x`` takes the mixed-precision path (cheap: a dtype test and one flag)."""
    return x.dtype in LOW_PRECISION or (x.dtype == torch.float32 and torch._C._is_any_autocast_enabled())


def _autocast(device_type: str, **kwargs: Any) -> Any:
    return torch.autocast(device_type, **kwargs) if torch.amp.is_autocast_available(device_type) else nullcontext()


def _half_precision_tensors(layer: Any) -> dict[str, Tensor]:
    """``layer``'s half-precision parameters and buffers, upcast to float32 (differentiably)."""
    named = (*layer.named_parameters(), *layer.named_buffers())
    return {name: t.float() for name, t in named if t.dtype in LOW_PRECISION}


def low_precision_call(layer: Any, forward: Callable[[Tensor], Tensor], x: Tensor, args: tuple = (),
                       kwargs: dict[str, Any] | None = None) -> Tensor:
    """``forward(x)`` (``layer``'s forward on ``x, *args, **kwargs``) under the rules of the module
    docs.  A layer cast to a half-precision type (``layer.to(torch.bfloat16)``) that computes in
    float32 does so with float32 copies of its parameters, through which gradients reach them."""
    dtype = compute_dtype(x)
    if dtype not in LOW_PRECISION:
        return forward(x)
    rows = 1
    for s in x.shape[:-1]:
        rows *= int(s)
    device_type = x.device.type
    if layer.low_precision_native(rows, x.device, dtype):
        with _autocast(device_type, dtype=dtype):
            y = forward(x)
    else:
        with _autocast(device_type, enabled=False):
            upcast = _half_precision_tensors(layer)
            y = (torch.func.functional_call(layer, upcast, (x.float(), *args), kwargs) if upcast
                 else forward(x.float()))
    return y.to(dtype)


def float_tables_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of a fixed transform's float tables (twiddles, DFT matrices) for a module cast to
    ``dtype``: float32 for half-precision types, which have no complex counterpart, else ``dtype``."""
    return torch.float32 if dtype in LOW_PRECISION else dtype
