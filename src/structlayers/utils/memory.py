"""Refusing allocations that cannot fit before making them.

Sizes given by a user (a layer's dense form, a benchmark's N, an approximation target's n) can
ask for more memory than the machine has.  Left to the allocator, the request either fails deep
inside torch with a traceback or, with Linux's overcommit, succeeds and gets the process killed
when the pages are touched.  :func:`check_allocation` compares the estimate with the memory
available now (``MemAvailable`` on Linux, free CUDA memory on a GPU) and raises
:class:`AllocationTooLargeError` naming what was asked for.  :func:`set_malloc_thresholds` and
:func:`release_free_memory` set glibc's heap (the bench keeps freed memory with them, memory
measurements make the resident size follow live memory).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from pathlib import Path

import torch

from structlayers.utils.report import human

#: The share of the available memory one request may take.
DEFAULT_FRACTION = 0.9


class AllocationTooLargeError(MemoryError, ValueError):
    """A request that would not fit in the memory available (a ``ValueError`` too: it is bad input)."""


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
            f"{what} needs about {human(nbytes, 'B', 1024)}, more than the {human(available, 'B', 1024)} available "
            f"on {torch.device(device)}; use a smaller size"
        )


#: glibc ``mallopt`` parameter numbers (``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
#: glibc's default ``M_MMAP_MAX``: how many allocations may be mapped at once.
DEFAULT_MMAP_MAX = 65536
INT_MAX = 2**31 - 1  # mallopt takes a C int


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int | None = None, *,
                          mmap_max: int | None = None) -> bool:
    """Fix glibc's mmap threshold (and the trim threshold, if given) in bytes; fixing them also
    stops glibc from adapting them as memory is freed.  ``mmap_max``, if given, caps how many
    allocations glibc maps at once (0: none, every allocation comes from the heap;
    :data:`DEFAULT_MMAP_MAX` restores glibc's default).  False off glibc or if glibc refused."""
    if mmap_threshold < 0 or (trim_threshold is not None and trim_threshold < 0) or (mmap_max or 0) < 0:
        raise ValueError("mmap_threshold, trim_threshold and mmap_max must be non-negative")
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold)) == 1
    if trim_threshold is not None:
        ok = libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(min(trim_threshold, INT_MAX))) == 1 and ok
    if mmap_max is not None:
        ok = libc.mallopt(M_MMAP_MAX, ctypes.c_int(min(mmap_max, INT_MAX))) == 1 and ok
    return ok


def release_free_memory() -> bool:
    """Return the heap's free pages to the system now (``malloc_trim(0)``); False off glibc."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))
