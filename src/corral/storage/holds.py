"""Holds: a live process's claim on layers it is building an image or container on.

A layer put into the store has no image yet; until the image record is written,
the putting process holds the layer chain (user `hold:<pid>:<starttime>`) so that
a concurrent `rmi` or prune in another process does not remove it. Holds of
processes that are gone are dropped by crash repair; the start time (from
/proc/<pid>/stat) guards against a reused pid.
"""

from __future__ import annotations

import os

from corral.linux.procfs import start_time

PREFIX = "hold:"


def _start_time(pid: int) -> str | None:
    value = start_time(pid, zombies=True)
    return None if value is None else str(value)


def current() -> str:
    pid = os.getpid()
    return f"{PREFIX}{pid}:{_start_time(pid)}"


def is_hold(user: str) -> bool:
    return user.startswith(PREFIX)


def alive(user: str) -> bool:
    try:
        pid_s, start = user[len(PREFIX):].split(":", 1)
        pid = int(pid_s)
    except ValueError:
        return False
    return _start_time(pid) == start
