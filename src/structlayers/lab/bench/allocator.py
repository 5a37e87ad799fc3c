"""CPU allocator settings for speed: keep freed memory in the process instead of handing it back.

With glibc's default settings every tensor above the (adaptive) mmap threshold is either mapped
fresh or carved from a heap top that ``free`` trims again, so a layer that allocates a few
half-megabyte buffers per call page-faults on every call: at N=1024 that costs an ACDC forward
more than its FFTs.  PyTorch's CPU launcher (``python -m torch.backends.xeon.run_cpu``) avoids it by
preloading tcmalloc or jemalloc; :func:`keep_freed_memory` gets the same effect from glibc itself
with two ``mallopt`` calls, for benchmarks and CPU training runs.  The glibc calls underneath are
:func:`structlayers.utils.memory.set_malloc_thresholds` and
:func:`~structlayers.utils.memory.release_free_memory` (memory measurements use them the other way
round, to make the resident size follow live memory).
"""

from __future__ import annotations

from dataclasses import dataclass

from structlayers.utils.memory import INT_MAX, set_malloc_thresholds


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


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> AllocatorSettings:
    """Make glibc serve allocations below ``mmap_threshold`` bytes from the heap and keep up to
    ``trim_threshold`` bytes of freed heap for reuse, so repeated same-sized tensors stop
    page-faulting.  Process-wide and idempotent; a no-op (``applied=False``) off glibc.

    32 MiB is glibc's largest mmap threshold on 64-bit systems; the cost is that a process keeps
    its peak heap (up to ``trim_threshold`` more than it uses) instead of returning it.
    """
    if not set_malloc_thresholds(mmap_threshold, trim_threshold):
        return AllocatorSettings(False)
    return AllocatorSettings(True, mmap_threshold, min(trim_threshold, INT_MAX))
