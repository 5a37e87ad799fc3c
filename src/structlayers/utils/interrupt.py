"""Ctrl-C as a request to stop at the next safe point, rather than an exception raised anywhere.

Python raises ``KeyboardInterrupt`` at whatever bytecode runs when SIGINT arrives.  When that is a
Python callback inside C code, the C code may replace it with an error of its own: numpy's
``np.char`` functions, for one, turn it into ``TypeError: result array type does not match
underlying function``.  A loop whose units of work must each finish or not happen (a database
transaction, a training batch) therefore takes the first Ctrl-C as a flag it checks between units;
a second Ctrl-C still stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopRequest"]


class StopRequest:
    """While entered (main thread only; elsewhere a no-op), the first SIGINT sets :attr:`requested`
    and prints ``message`` to standard error; a second restores the previous handler and raises
    ``KeyboardInterrupt``.  Leaving restores the previous handler."""

    def __init__(self, message: str = "") -> None:
        self.message = message
        #: Whether a Ctrl-C arrived while entered.
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.restore()

    def restore(self) -> None:
        """Put back the handler found on entry (idempotent)."""
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
            self._installed = False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_previous": None, "_installed": False}

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.restore()
            raise KeyboardInterrupt
        self.requested = True
        if self.message:
            print(f"\n{self.message}", file=sys.stderr, flush=True)
