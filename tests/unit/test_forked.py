"""corral.engine.forked: a forked child's status and stderr, as a command's would be."""

from __future__ import annotations

import os
import signal
import sys
import threading

from corral.engine.forked import run_capturing_stderr, single_threaded


def test_status_and_stderr_come_back() -> None:
    def child() -> int:
        sys.stderr.write("to stderr\n")
        return 7

    assert run_capturing_stderr(child) == (7, "to stderr\n")


def test_a_signal_is_128_plus_its_number() -> None:
    def child() -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    assert run_capturing_stderr(child)[0] == 128 + signal.SIGKILL


def test_an_exception_is_status_1_with_its_traceback() -> None:
    def child() -> int:
        raise ValueError("broken")

    code, err = run_capturing_stderr(child)
    assert code == 1
    assert "ValueError: broken" in err


def test_stdin_null_gives_the_child_an_empty_stdin() -> None:
    def child() -> int:
        return len(os.read(0, 10))

    assert run_capturing_stderr(child, stdin_null=True)[0] == 0


def test_single_threaded_sees_other_threads() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert not single_threaded()
    finally:
        release.set()
        thread.join()
