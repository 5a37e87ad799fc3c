"""Ctrl-C taken as a request (structlayers.utils.interrupt.StopRequest)."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import pytest

from structlayers.utils.interrupt import StopRequest


def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)  # the handler runs at the next bytecode


def test_the_first_ctrl_c_is_a_request_the_second_stops_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGINT)
    with StopRequest("stopping after this unit") as stop:
        assert not stop.requested
        _sigint()
        assert stop.requested
        assert "stopping after this unit" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            _sigint()
        assert signal.getsignal(signal.SIGINT) is before  # restored by the second press
    assert signal.getsignal(signal.SIGINT) is before


def test_leaving_restores_the_handler_and_a_copy_holds_none() -> None:
    seen = []

    def handler(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        with StopRequest() as stop:
            assert signal.getsignal(signal.SIGINT) == stop._on_sigint
            copy = pickle.loads(pickle.dumps(stop))
        assert signal.getsignal(signal.SIGINT) is handler
        copy.restore()  # never installed: nothing to put back
        assert signal.getsignal(signal.SIGINT) is handler
        _sigint()
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_it_installs_nothing() -> None:
    result = {}

    def body() -> None:
        with StopRequest() as stop:
            result["handler"] = signal.getsignal(signal.SIGINT)
            result["requested"] = stop.requested

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert result == {"handler": before, "requested": False}
