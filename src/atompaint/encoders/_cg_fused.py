"""The fused CPU kernel of the Clebsch-Gordan tensor product (``_cg_kernel.cpp``) as a PyTorch operator.

The kernel is compiled on first use with ``torch.utils.cpp_extension`` (a C++ compiler and ninja are
needed; the build is cached in ``TORCH_EXTENSIONS_DIR``).  Without a compiler, or with
``ATOMPAINT_FUSED_TP=0``, :func:`fused_kernel` returns ``None`` and the tensor product runs its
plain-PyTorch form, which computes the same function (as they do inside :func:`plain_form`).

``atompaint::cg_tensor_product`` and its backward are ``torch.library`` operators, so autograd, fake
tensors and ``FlopCounterMode`` see them: their FLOP formulas are the analytic count of
:meth:`CGTensorProductCore.flop_count` (the same dense Clebsch-Gordan blocks as the plain form),
the backward twice the forward's contractions (the products' and weights' gradients; the forward's
recomputation is not counted, as in the plain form's checkpointed chunks it is counted as a forward).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

#: Set to ``0`` to run the plain-PyTorch tensor product even where the kernel builds.
ENV_SWITCH = "ATOMPAINT_FUSED_TP"
SOURCE = Path(__file__).with_name("_cg_kernel.cpp")
#: Compiler flags of the kernel's build (``-DCG_TILE=n`` added to them sets its tile size).
CFLAGS = ("-O3", "-march=native", "-fopenmp-simd")


_plain = [False]


@contextmanager
def plain_form() -> Iterator[None]:
    """Inside, tensor products run their plain-PyTorch form (for A/B timings and that form's tests)."""
    old, _plain[0] = _plain[0], True
    try:
        yield
    finally:
        _plain[0] = old


def fused_available() -> bool:
    """Whether tensor products run the fused kernel now (built, and not switched off)."""
    return not _plain[0] and fused_kernel() is not None


@cache
def fused_kernel() -> ModuleType | None:
    """The compiled kernel, or ``None`` (with one warning saying why) where it cannot be built."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    from torch.utils import cpp_extension

    # ninja may be installed in the virtual environment without it being on PATH.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    try:
        return cpp_extension.load(name="atompaint_cg_kernel", sources=[str(SOURCE)],
                                  extra_cflags=list(CFLAGS), verbose=False)
    except Exception as error:
        warnings.warn(f"the fused Clebsch-Gordan kernel did not build ({type(error).__name__}: "
                      f"{str(error).strip().splitlines()[-1] if str(error).strip() else ''}); "
                      "the tensor product runs its plain-PyTorch form", RuntimeWarning, stacklevel=2)
        return None


@torch.library.custom_op("atompaint::cg_tensor_product", mutates_args=())
def cg_tensor_product(x: Tensor, weights: list[Tensor], spec: Tensor, blocks: Tensor, out_channels: int,
                      flops: int) -> Tensor:
    """``(B, C D_in, V) -> (B, out_channels, V)``; ``flops`` is the call's analytic count (for counters)."""
    kernel = fused_kernel()
    if kernel is None:
        raise RuntimeError("the fused Clebsch-Gordan kernel is not available")
    return kernel.forward(x.contiguous(), [w.contiguous() for w in weights], spec, blocks)


@cg_tensor_product.register_fake
def _(x, weights, spec, blocks, out_channels, flops):
    return x.new_empty(x.shape[0], out_channels, x.shape[2])


@torch.library.custom_op("atompaint::cg_tensor_product_backward", mutates_args=())
def cg_tensor_product_backward(grad: Tensor, x: Tensor, weights: list[Tensor], spec: Tensor, blocks: Tensor,
                               flops: int) -> list[Tensor]:
    """``[grad x, *grad weights]`` of :func:`cg_tensor_product` (not differentiable again)."""
    return fused_kernel().backward(grad, x.contiguous(), [w.contiguous() for w in weights], spec, blocks)


@cg_tensor_product_backward.register_fake
def _(grad, x, weights, spec, blocks, flops):
    return [torch.empty_like(x)] + [torch.empty_like(w) for w in weights]


def _setup(ctx, inputs, output) -> None:
    x, weights, spec, blocks, _, flops = inputs
    ctx.save_for_backward(x, spec, blocks, *weights)
    ctx.flops = flops


def _backward(ctx, grad):
    x, spec, blocks, *weights = ctx.saved_tensors
    grads = cg_tensor_product_backward(grad, x, weights, spec, blocks, ctx.flops)
    return grads[0], list(grads[1:]), None, None, None, None


cg_tensor_product.register_autograd(_backward, setup_context=_setup)


@register_flop_formula(torch.ops.atompaint.cg_tensor_product)
def _forward_flops(*args, flops: int | None = None, out_shape=None, **kwargs) -> int:
    return args[5] if flops is None else flops


@register_flop_formula(torch.ops.atompaint.cg_tensor_product_backward)
def _backward_flops(*args, flops: int | None = None, out_shape=None, **kwargs) -> int:
    return 2 * (args[5] if flops is None else flops)
