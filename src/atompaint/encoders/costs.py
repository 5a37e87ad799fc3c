"""What an encoder costs: parameters and forward FLOPs per module type, and the measured peak memory
of a training step of any model built on it.

:func:`encoder_cost` counts the escnn model *as executed*, analytically, per module type:

- convolutions (``conv``): escnn expands every steerable filter and runs one dense ``conv3d``, so a
  ``k^3`` convolution ``C_in -> C_out`` costs ``2 C_out (C_in / groups) k^3`` FLOPs per output voxel,
  whatever the number of learned basis coefficients (the expansion itself is a training-time cost
  per step, not per example, and is not included);
- structured mixings (``mixing``): the analytic count of every per-irrep plugin
  (:class:`~atompaint.encoders.mixing.IrrepMixing`);
- Fourier activations (``fourier``): per field and voxel, ``2 G F`` for the inverse transform to the
  ``G`` grid samples, ``G`` evaluations of the function and ``2 F G`` for the transform back
  (``F`` Fourier coefficients; Cesa, Lang & Weiler, ICLR 2022; escnn's ``FourierPointwise``);
- tensor products (``tensor product``): escnn's ``D^2 (1 + 2 D_out)`` per field and voxel
  (:func:`~atompaint.encoders.tensor_product.escnn_tensor_product_flops`), or the Clebsch-Gordan form's
  count (:class:`~atompaint.encoders.tensor_product.CGTensorProduct`);
- grid-domain encoders (:mod:`atompaint.encoders.grid`): every unit's own count, the rotated
  kernels as executed (``conv``: ``2 k^3`` per output sample of a depthwise convolution), the
  orientation convolution (``orientation``: ``2 * 24`` per output sample), the mixing plugin on
  ``batch * 24 * voxels`` rows, pointwise activations (``activation``: one per sample);
- gates, batch norms (``norm``: centre, scale, shift), anti-aliased pooling (``pool``: a fixed
  depthwise Gaussian ``conv3d``) and the read-out (spatial mean and irrep norms).

:class:`torch.utils.flop_counter.FlopCounterMode` reports the matmul FLOPs (``2 * MACs``) of escnn's
modules and, since structlayers makes its layers visible to it, the whole analytic count of every
mixing plugin (the tests check that they agree); the other elementwise FLOPs are counted on top.
Peak memory is *measured*, not estimated from the layer shapes: escnn's Fourier activations and
tensor products allocate large temporary buffers that an estimate from the module outputs
(torchinfo's) misses.
"""

from __future__ import annotations

import gc
import math
import resource
from dataclasses import dataclass, field
from pathlib import Path

import torch
from escnn import nn as enn
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from atompaint.encoders.architectures import Encoder
from atompaint.encoders.grid import GridEncoder, GridModule
from atompaint.encoders.layers import InvariantReadout
from atompaint.encoders.mixing import IrrepMixing
from atompaint.encoders.tensor_product import CGTensorProduct, escnn_tensor_product_flops
from structlayers.base import FlopCount, count_params, device_dtype
from structlayers.utils.memory import DEFAULT_MMAP_MAX, release_free_memory, set_malloc_thresholds
from structlayers.utils.tracing import record_shapes, run_example

#: The module types an encoder's cost is split into, in report order.
COST_KINDS: tuple[str, ...] = ("conv", "mixing", "orientation", "fourier", "tensor product", "gate", "activation",
                               "norm", "pool", "readout")


@dataclass
class EncoderCost:
    """Parameters and forward FLOPs of one input through an encoder, per module type (:data:`COST_KINDS`)."""

    params: dict[str, int] = field(default_factory=dict)
    flops: dict[str, FlopCount] = field(default_factory=dict)

    @property
    def total_params(self) -> int:
        return sum(self.params.values())

    @property
    def total(self) -> FlopCount:
        total = FlopCount()
        for count in self.flops.values():
            total = total + count
        return total

    def add(self, kind: str, params: int, flops: FlopCount) -> None:
        self.params[kind] = self.params.get(kind, 0) + params
        self.flops[kind] = self.flops.get(kind, FlopCount()) + flops


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, GridModule):
        return module.cost_kind
    if isinstance(module, IrrepMixing):
        return "mixing"
    if isinstance(module, enn.R3Conv):
        return "conv"
    if isinstance(module, enn.FourierPointwise):
        return "fourier"
    if isinstance(module, (enn.TensorProductModule, CGTensorProduct)):
        return "tensor product"
    if isinstance(module, enn.GatedNonLinearity1):
        return "gate"
    if isinstance(module, enn.IIDBatchNorm3d):
        return "norm"
    if isinstance(module, enn.PointwiseAvgPoolAntialiased3D):
        return "pool"
    if isinstance(module, InvariantReadout):
        return "readout"
    return None


def module_flops(module: nn.Module, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> FlopCount:
    """Forward FLOPs of one call of an encoder module on an input ``x_shape`` giving ``y_shape`` (see the
    module docs for each formula)."""
    batch, voxels = x_shape[0], math.prod(y_shape[2:])
    if isinstance(module, GridModule):
        return module.flop_count(x_shape, y_shape)
    if isinstance(module, IrrepMixing):
        return module.flop_count(batch * voxels)
    if isinstance(module, enn.R3Conv):
        k = module.kernel_size
        outputs = math.prod(y_shape)
        macs = outputs * (x_shape[1] // module.groups) * k**3
        return FlopCount(matmul=2 * macs, elementwise=outputs if module.bias is not None else 0)
    if isinstance(module, enn.FourierPointwise):
        grid, coefficients = module.A.shape
        rows = batch * voxels * len(module.in_type)
        return FlopCount(matmul=4 * rows * grid * coefficients, elementwise=rows * grid)
    if isinstance(module, enn.TensorProductModule):
        return escnn_tensor_product_flops(module, batch * voxels)
    if isinstance(module, CGTensorProduct):
        return module.flop_count(batch * voxels)
    if isinstance(module, enn.GatedNonLinearity1):
        return FlopCount(elementwise=batch * voxels * (len(module.out_type) + module.out_type.size))
    if isinstance(module, enn.IIDBatchNorm3d):
        return FlopCount(elementwise=3 * math.prod(y_shape))
    if isinstance(module, enn.PointwiseAvgPoolAntialiased3D):
        return FlopCount(matmul=2 * math.prod(y_shape) * module.filter.shape[-1] ** 3)
    if isinstance(module, InvariantReadout):
        return FlopCount(elementwise=2 * math.prod(x_shape))
    raise TypeError(f"no cost formula for {type(module).__name__}")


def encoder_cost(encoder: Encoder | GridEncoder) -> EncoderCost:
    """Parameters and forward FLOPs of one input through ``encoder`` (eval mode), per module type.

    The spatial mean that :meth:`Encoder.fields` takes before the read-out counts as ``readout``.
    """
    cfg = encoder.config
    units = {name: m for name, m in encoder.named_modules() if _kind(m) is not None}
    x = torch.zeros(1, cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)
    with record_shapes(units) as shapes:
        run_example(encoder, x)
    cost = EncoderCost(params={k: 0 for k in COST_KINDS}, flops={k: FlopCount() for k in COST_KINDS})
    counted: set[int] = set()
    for name, module in units.items():
        kind = _kind(module)
        own = 0 if id(module) in counted else count_params(module)
        counted.add(id(module))
        flops = FlopCount()
        for x_shape, y_shape in zip(shapes[name].inputs, shapes[name].outputs):
            flops = flops + module_flops(module, x_shape, y_shape)
        cost.add(kind, own, flops)
    cost.add("readout", 0, FlopCount(elementwise=encoder.field_features * _final_voxels(encoder, shapes, units)))
    rest = count_params(encoder) - cost.total_params
    if rest:
        raise AssertionError(f"{rest} encoder parameters belong to no counted module type")
    return cost


def _final_voxels(encoder: Encoder, shapes: dict, units: dict) -> int:
    """Voxels of the last field, which :meth:`Encoder.fields` averages."""
    last = [n for n in units if shapes[n].outputs and _kind(units[n]) != "readout"][-1]
    return math.prod(shapes[last].outputs[-1][2:])


def encoder_flops(encoder: Encoder) -> int:
    """Forward FLOPs of one input through the exported encoder (``FlopCounterMode``)."""
    cfg = encoder.config
    was_training = encoder.training
    exported = encoder.export()
    x = torch.zeros(1, cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        exported.fields(x)
    encoder.train(was_training)
    return int(counter.get_total_flops())


def measure_peak_memory(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """Measured peak memory (bytes) of one training-mode forward+backward pass above the baseline.

    On CUDA this is ``max_memory_allocated``; on CPU the process's peak resident set size
    (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident size before the pass,
    with glibc told to map large blocks directly, so escnn's temporary buffers are included.  A
    warm-up pass runs first and is not measured.  Falls back to ``ru_maxrss`` where the peak cannot
    be reset (then it is an upper bound).
    """
    model.train()
    device = device_dtype(model)[0]
    inputs = tuple(x.to(device) for x in inputs)
    # One unmeasured pass first, so one-time allocations (kernels, thread pools) are not charged.
    _forward_backward(model, inputs)
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _forward_backward(model, inputs)
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    gc.collect()
    _return_free_memory_to_os()
    reset = _reset_peak_rss()
    base = _status_kib("VmRSS")
    _forward_backward(model, inputs)
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.zero_grad(set_to_none=True)
    return max(0, int(peak - base) * 1024)


def _forward_backward(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    out = model(*inputs)
    out.float().pow(2).mean().backward()


def _return_free_memory_to_os() -> None:
    """Make RSS follow live memory: mmap every allocation over 128 KiB (glibc otherwise raises the
    threshold after frees and recycles heap pages, hiding new allocations) and trim the heap."""
    set_malloc_thresholds(128 * 1024, mmap_max=DEFAULT_MMAP_MAX)
    release_free_memory()


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not found in /proc/self/status")
