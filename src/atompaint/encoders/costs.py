"""What an encoder costs: forward FLOPs of its plain-PyTorch export, and the measured peak memory of
a training step of any model built on it.

FLOPs are measured with :class:`torch.utils.flop_counter.FlopCounterMode` on the export (escnn's basis
expansion is a training-time cost, not an inference one).  Peak memory is *measured*, not estimated
from the layer shapes: escnn's Fourier activations and tensor products allocate large temporary
buffers that an estimate from the module outputs (torchinfo's) misses.
"""

from __future__ import annotations

import gc
import resource
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from atompaint.encoders.architectures import Encoder
from structlayers.allocator import release_free_memory, set_malloc_thresholds
from structlayers.base import device_dtype


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
    set_malloc_thresholds(128 * 1024)
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
