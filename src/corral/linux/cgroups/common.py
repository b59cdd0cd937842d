"""Helpers every controller module shares: reading and writing cgroup files with
errors that name the `linux.resources` field, flat/nested-keyed file parsers,
and warnings for settings a host cannot honour but the spec lets us ignore."""

from __future__ import annotations

import os

from corral.errors import InvalidArgument, Unavailable

# Where warnings go; the CLI may replace it with its logger's writer.
_warn_sink = None


def set_warning_sink(sink) -> None:
    global _warn_sink
    _warn_sink = sink


def warn(message: str) -> None:
    if _warn_sink is not None:
        _warn_sink(message)
    else:
        os.write(2, f"corral-runtime: warning: {message}\n".encode())


class ControllerMissing(Unavailable):
    """The configuration needs a controller this host has not mounted or enabled."""


def write(directory: str, name: str, value: object, field: str) -> None:
    path = os.path.join(directory, name)
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as exc:
        kind = InvalidArgument if exc.errno in (22, 34) else Unavailable  # EINVAL, ERANGE
        raise kind(f"linux.resources.{field}: cannot write {str(value)!r} to {path}: "
                   f"{exc.strerror}") from None


def read(directory: str, name: str) -> str | None:
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except OSError:
        return None


def read_int(directory: str, name: str) -> int:
    """A single number; "max" is returned as the largest u64, runc-style; missing is 0."""
    text = read(directory, name)
    if text is None:
        return 0
    text = text.strip()
    if text == "max":
        return 2**64 - 1
    try:
        return int(text)
    except ValueError:
        return 0


def flat_keyed(text: str | None) -> dict[str, int]:
    """'key value' lines (memory.stat, cpu.stat, memory.events, cpuacct.stat)."""
    result: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            result[key] = int(value)
        except ValueError:
            continue
    return result


def exists(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def max_or(value: int | None) -> str:
    """v2 spelling: negative means unlimited."""
    return "max" if value is None or value < 0 else str(value)


def parse_list(text: str) -> list[int]:
    """The kernel's list format "0-3,7" as numbers (cpuset.cpus, cpuset.mems)."""
    result: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if dash:
            result.extend(range(int(low), int(high) + 1))
        else:
            result.append(int(low))
    return result
