"""CPU allocator settings for speed: keep freed memory in the process instead of handing it back.

With glibc's default settings every tensor above the (adaptive) mmap threshold is either mapped
fresh or carved from a heap top that ``free`` trims again, so a layer that allocates a few
half-megabyte buffers per call page-faults on every call: at N=1024 that costs an ACDC forward
more than its FFTs.  Whatever the threshold, glibc maps every allocation above 32 MiB (its largest
threshold on 64-bit systems) unless ``M_MMAP_MAX`` is 0, so a training step whose activations are
tens of MiB page-faults them in afresh every step.  PyTorch's CPU launcher (``python -m
torch.backends.xeon.run_cpu``) avoids this by preloading tcmalloc or jemalloc;
:func:`keep_freed_memory` gets the same effect from glibc itself with three ``mallopt`` calls, for
benchmarks and CPU training runs (:func:`keep_freed_memory_env`: the same for a new process).  The
glibc calls underneath are :func:`structlayers.utils.memory.set_malloc_thresholds` and
:func:`~structlayers.utils.memory.release_free_memory` (memory measurements use them the other way
round, to make the resident size follow live memory).
"""

from __future__ import annotations

from dataclasses import dataclass

from structlayers.utils.memory import DEFAULT_MMAP_MAX, INT_MAX, set_malloc_thresholds


@dataclass(frozen=True)
class AllocatorSettings:
    """What :func:`keep_freed_memory` set; ``applied`` is False where the C library is not glibc."""

    applied: bool
    mmap_threshold: int = 0
    trim_threshold: int = 0
    map_large: bool = True

    def describe(self) -> str:
        if not self.applied:
            return "system malloc (unchanged)"
        mapped = (f"allocations over {self.mmap_threshold >> 20} MiB mapped" if self.map_large
                  else "no allocation mapped")
        return f"glibc malloc, {mapped}, trim threshold {self.trim_threshold >> 20} MiB"


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30, *,
                      map_large: bool = False) -> AllocatorSettings:
    """Make glibc serve allocations from the heap and keep up to ``trim_threshold`` bytes of freed
    heap for reuse, so repeated same-sized tensors stop page-faulting.  With ``map_large`` only
    those below ``mmap_threshold`` bytes (at most 32 MiB, glibc's limit on 64-bit systems) come
    from the heap and larger ones are mapped fresh each time, as glibc does by default.
    Process-wide and idempotent; a no-op (``applied=False``) off glibc.

    The cost is that a process keeps its peak heap (up to ``trim_threshold`` more than it uses)
    instead of returning it.
    """
    mmap_max = DEFAULT_MMAP_MAX if map_large else 0
    if not set_malloc_thresholds(mmap_threshold, trim_threshold, mmap_max=mmap_max):
        return AllocatorSettings(False)
    return AllocatorSettings(True, mmap_threshold, min(trim_threshold, INT_MAX), map_large)


def keep_freed_memory_env(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30, *,
                          map_large: bool = False) -> dict[str, str]:
    """The environment variables that give a new process :func:`keep_freed_memory`'s settings from
    its start (glibc reads them before the first allocation), whatever code it then runs."""
    return {"MALLOC_MMAP_THRESHOLD_": str(mmap_threshold), "MALLOC_TRIM_THRESHOLD_": str(min(trim_threshold, INT_MAX)),
            "MALLOC_MMAP_MAX_": str(DEFAULT_MMAP_MAX if map_large else 0)}
