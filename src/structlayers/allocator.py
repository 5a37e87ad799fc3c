"""CPU allocator settings for speed: keep freed memory in the process instead of handing it back.

With glibc's default settings every tensor above the (adaptive) mmap threshold is either mapped
fresh or carved from a heap top that ``free`` trims again, so a layer that allocates a few
half-megabyte buffers per call page-faults on every call: at N=1024 that costs an ACDC forward
more than its FFTs.  PyTorch's CPU launcher (``python -m torch.backends.xeon.run_cpu``) avoids it by
preloading tcmalloc or jemalloc; :func:`keep_freed_memory` gets the same effect from glibc itself
with two ``mallopt`` calls, for benchmarks and CPU training runs.  :func:`set_malloc_thresholds` and
:func:`release_free_memory` are the underlying glibc calls (memory measurements use them the other
way round, to make the resident size follow live memory).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from dataclasses import dataclass

#: glibc ``mallopt`` parameter numbers (``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1  # mallopt takes a C int


@dataclass(frozen=True)
class AllocatorSettings:
    """What :func:`keep_freed_memory` set; ``applied`` is False where the C library is not glibc."""

    applied: bool
    mmap_threshold: int = 0
    trim_threshold: int = 0

    def describe(self) -> str:
        if not self.applied:
            return "system malloc (unchanged)"
        return (f"glibc malloc, mmap threshold {self.mmap_threshold >> 20} MiB, "
                f"trim threshold {self.trim_threshold >> 20} MiB")


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int | None = None) -> bool:
    """Fix glibc's mmap threshold (and the trim threshold, if given) in bytes; fixing them also
    stops glibc from adapting them as memory is freed.  False off glibc or if glibc refused."""
    if mmap_threshold < 0 or (trim_threshold is not None and trim_threshold < 0):
        raise ValueError("mmap_threshold and trim_threshold must be non-negative byte counts")
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold)) == 1
    if trim_threshold is not None:
        ok = libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(min(trim_threshold, _INT_MAX))) == 1 and ok
    return ok


def release_free_memory() -> bool:
    """Return the heap's free pages to the system now (``malloc_trim(0)``); False off glibc."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> AllocatorSettings:
    """Make glibc serve allocations below ``mmap_threshold`` bytes from the heap and keep up to
    ``trim_threshold`` bytes of freed heap for reuse, so repeated same-sized tensors stop
    page-faulting.  Process-wide and idempotent; a no-op (``applied=False``) off glibc.

    32 MiB is glibc's largest mmap threshold on 64-bit systems; the cost is that a process keeps
    its peak heap (up to ``trim_threshold`` more than it uses) instead of returning it.
    """
    if not set_malloc_thresholds(mmap_threshold, trim_threshold):
        return AllocatorSettings(False)
    return AllocatorSettings(True, mmap_threshold, min(trim_threshold, _INT_MAX))
