"""What the machine sustains (memory bandwidth, GEMM rate) and the bytes-moved (roofline) bound
of a layer, printed beside every timing of ``structlayers bench``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from structlayers.base import count_params
from structlayers.utils.timing import time_interleaved


@dataclass(frozen=True)
class Machine:
    """What the device sustains: memory bandwidth (bytes/s, a large copy) and a large GEMM's FLOP/s."""

    device: str
    bandwidth: float
    matmul_flops: float


def measure_machine(
    device: torch.device, dtype: torch.dtype = torch.float32, megabytes: int = 256, gemm_size: int = 2048
) -> Machine:
    """Best-of-several copy bandwidth of a ``megabytes`` buffer (read + write) and the FLOP rate of
    a square ``gemm_size`` matmul."""
    device = torch.device(device)
    n = megabytes * 2**20 // torch.empty((), dtype=dtype).element_size()
    src = torch.randn(n, device=device, dtype=dtype)
    dst = torch.empty_like(src)
    copy = time_interleaved([lambda: dst.copy_(src)], device, warmup=2, repeats=10)[0]
    bandwidth = 2 * src.numel() * src.element_size() / copy.best
    k = gemm_size
    a = torch.randn(k, k, device=device, dtype=dtype)
    b = torch.randn(k, k, device=device, dtype=dtype)
    mm = time_interleaved([lambda: a @ b], device, warmup=2, repeats=5)[0]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(torch.get_num_threads())
    return Machine(name, bandwidth, 2 * k**3 / mm.best)


def cpu_name(threads: int) -> str:
    """The CPU as a :class:`Machine` names it: ``"cpu (1 thread)"``, ``"cpu (2 threads)"``."""
    return f"cpu ({threads} thread{'' if threads == 1 else 's'})"


def bytes_moved(layer: torch.nn.Module, rows: int, in_features: int, out_features: int, element_size: int,
                backward: bool) -> int:
    """Bytes a layer must move at least: its input, output and parameters once (forward); the
    backward adds reading the output gradient, the input and the parameters again and writing the
    input and parameter gradients."""
    params = count_params(layer)
    forward = rows * (in_features + out_features) + params
    if not backward:
        return forward * element_size
    return (forward + rows * (out_features + 2 * in_features) + 2 * params) * element_size


def bound_seconds(machine: Machine, nbytes: int, flops: int) -> float:
    """The roofline bound: the slower of moving ``nbytes`` and doing ``flops`` at GEMM speed."""
    return max(nbytes / machine.bandwidth, flops / machine.matmul_flops)
