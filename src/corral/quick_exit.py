"""Run a command's `main` and leave without the interpreter's finalization.

A command is a short-lived process: at exit CPython tears down every module and
object it loaded, ~20 ms for the engine's ~200 modules, time a user waits for
after the work is done. `run` does what finalization does that matters to the
outside world — join non-daemon threads, run atexit handlers, flush stdout and
stderr — then calls os._exit (as Mercurial and pip's fast paths do).

The launchers (scripts/write-launchers) also start with the cyclic garbage
collector off, so that the thousands of objects the imports create are not
scanned again and again; `collect_garbage_from_now` (called by the command lines
once their imports are done) freezes what exists and turns it back on, so a
long-running command (cri serve, registry serve, logs -f) still collects cycles.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself costs ~3 ms to import: only for the checkers
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn


def collect_garbage_from_now() -> None:
    """Objects made so far stay (gc.freeze); later ones are collected as usual."""
    import gc

    gc.freeze()
    gc.enable()


def run(main: Callable[[], object]) -> NoReturn:
    """sys.exit(main()), minus the module teardown."""
    try:
        code = _exit_code(main())
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        code = 130
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()  # type: ignore[attr-defined] # join non-daemon threads
        atexit = sys.modules.get("atexit")  # nothing registered if nobody imported it
        if atexit is not None:
            atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed, or the reader went away
                pass
        os._exit(code)


def _exit_code(value: object) -> int:
    """What sys.exit makes of its argument: None is 0, an int itself, else 1 (printed)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value % 256
    print(value, file=sys.stderr)
    return 1
