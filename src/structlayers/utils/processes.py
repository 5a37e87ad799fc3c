"""Independent CPU-bound tasks (the fits of an approximation study) spread over worker processes.

Processes, not threads: each small fit is bound by Python overhead and the GIL, so two threads run
no faster than one.  Workers of one thread start by ``fork`` where the OS has it (no re-import, and
no ``if __name__ == "__main__"`` guard asked of the caller's script); workers of several threads by
``spawn``, since a forked child cannot reuse the parent's OpenMP thread pool.  Workers ignore Ctrl-C,
which belongs to the parent: it stops the pool and keeps what has finished.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

#: The worker's task function and its shared state, set once per worker by :func:`_start_worker`.
_TASK: Callable[[Any], Any] | None = None


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(tasks: int, threads: int = 1) -> int:
    """Worker processes for ``tasks`` independent tasks of ``threads`` torch threads each: as many
    as the available CPUs hold, never more than there are tasks."""
    return max(1, min(tasks, available_cpus() // max(1, threads)))


def _start_worker(task: Callable[[Any], Any], threads: int) -> None:
    global _TASK
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _TASK = task


def _run_task(item: Any) -> Any:
    assert _TASK is not None, "worker started without its task"
    return _TASK(item)


@contextmanager
def unordered_map(task: Callable[[T], R], items: Iterable[T], workers: int, threads: int = 1) -> Iterator[Iterator[R]]:
    """``task`` over ``items`` in ``workers`` processes of ``threads`` torch threads, results as
    they finish; a task's exception (Ctrl-C included) is raised here.  ``task`` is pickled once per
    worker (a module-level function, or an object with ``__call__`` holding the state the tasks
    share).  With one worker the tasks run here, in order.  Leaving the block early (Ctrl-C, an
    error) stops the workers at once."""
    if workers <= 1:
        yield (task(item) for item in items)
        return
    method = "fork" if threads == 1 and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                   initializer=_start_worker, initargs=(task, threads))
    futures = [executor.submit(_run_task, item) for item in items]
    try:
        yield (future.result() for future in as_completed(futures))
    except BaseException:
        # A running fit may take minutes: end it now (Python >= 3.14 has terminate_workers() for this;
        # shutdown() forgets the processes, so take them first).
        running = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in running:
            process.terminate()
        for process in running:
            process.join()
        raise
    finally:
        executor.shutdown(wait=True)
