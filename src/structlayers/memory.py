"""Refusing allocations that cannot fit before making them.

Sizes given by a user (a layer's dense form, a benchmark's N, an approximation target's n) can
ask for more memory than the machine has.  Left to the allocator, the request either fails deep
inside torch with a traceback or, with Linux's overcommit, succeeds and gets the process killed
when the pages are touched.  :func:`check_allocation` compares the estimate with the memory
available now (``MemAvailable`` on Linux, free CUDA memory on a GPU) and raises
:class:`AllocationTooLargeError` naming what was asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

#: The share of the available memory one request may take.
DEFAULT_FRACTION = 0.9


class AllocationTooLargeError(MemoryError, ValueError):
    """A request that would not fit in the memory available (a ``ValueError`` too: it is bad input)."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory a new allocation on ``device`` can use now, or ``None`` when it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_allocation(nbytes: float, what: str, device: torch.device | str = "cpu",
                     fraction: float = DEFAULT_FRACTION) -> None:
    """Raise :class:`AllocationTooLargeError` if ``nbytes`` exceeds ``fraction`` of the memory
    available on ``device``; ``what`` names the request in the message."""
    available = available_bytes(device)
    if available is not None and nbytes > fraction * available:
        raise AllocationTooLargeError(
            f"{what} needs about {human_bytes(nbytes)}, more than the {human_bytes(available)} available "
            f"on {torch.device(device)}; use a smaller size"
        )
