"""Running Python code in a forked child as if it were a command: its exit status, its
stderr captured, its stdout shared. For corral-runtime verbs that need a process of
their own (setns(2) into a container's namespaces is per process): a fork of the CLI,
whose modules are loaded already, instead of a new interpreter."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def single_threaded() -> bool:
    """No other Python thread runs: forking and then running Python code is safe (no
    lock another thread holds is copied locked into the child)."""
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


def run_capturing_stderr(func: Callable[[], int], *, stdin_null: bool = False
                         ) -> tuple[int, str]:
    """(exit status, stderr text) of `func()` run in a child: status 128+N if a signal
    N killed it. Call it with no other thread running."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would write this process's buffered output again
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            if stdin_null:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
            os.dup2(write_end, 2)
            os.close(write_end)
            sys.stderr = open(2, "w", errors="backslashreplace", closefd=False)  # noqa: SIM115
            code = func()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported on the captured stderr
            import traceback

            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code & 0xFF)
    os.close(write_end)
    chunks = []
    try:
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return (128 - code if code < 0 else code), b"".join(chunks).decode(errors="replace")
