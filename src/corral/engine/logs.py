"""Container logs in the CRI/k8s-file format (kubelet-cri-logging.md), written by conmon.

Each line: `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>`; `P` marks a
partial line continued by the next record of the stream, `F` a full one. Reading joins
partials, filters `--since`, keeps the last `--tail` lines, and with `follow` polls the
file until the container has stopped and the file is read to the end.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from corral.errors import InvalidArgument


@dataclass(frozen=True)
class LogLine:
    timestamp: str
    stream: str
    text: str  # without the newline

    @property
    def time(self) -> float:
        return parse_timestamp(self.timestamp)


def parse_timestamp(text: str) -> float:
    """RFC 3339 with up to nanoseconds and Z or +hh:mm -> seconds since the epoch."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", text)
    if not m:
        raise ValueError(text)
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    tz = m.group(3) or "Z"
    offset = timedelta(0) if tz == "Z" else (1 if tz[0] == "+" else -1) * timedelta(
        hours=int(tz[1:3]), minutes=int(tz[4:6]))
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return (base - offset).replace(tzinfo=UTC).timestamp() + frac


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: RFC 3339, a Unix time, or a duration before now (10s, 5m, 1h30m)."""
    now = time.time() if now is None else now
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:h|m|s|ms))+)", text)
    if m:
        total = 0.0
        for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
            total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        return now - total
    try:
        if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
            text += "T00:00:00Z"
        return parse_timestamp(text)
    except ValueError:
        raise InvalidArgument(f"--since: {text!r} is not a time (RFC 3339, Unix "
                              "seconds or a duration like 10m)") from None


def _records(chunk: str, pending: dict[str, list[str]]) -> Iterator[LogLine]:
    for raw in chunk.splitlines():
        parts = raw.split(" ", 3)
        if len(parts) < 3:
            continue
        ts, stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) == 4 else ""
        if tag == "P":
            pending.setdefault(stream, []).append(text)
            continue
        joined = "".join(pending.pop(stream, [])) + text
        yield LogLine(ts, stream, joined)


def read_logs(path: str, *, since: float | None = None, tail: int | None = None,
              follow: bool = False, running: Callable[[], bool] | None = None,
              poll: float = 0.1) -> Iterator[LogLine]:
    pending: dict[str, list[str]] = {}

    def keep(line: LogLine) -> bool:
        if since is None:
            return True
        try:
            return line.time >= since
        except ValueError:
            return True

    try:
        handle = open(path, encoding="utf-8", errors="replace", newline="\n")  # noqa: SIM115
    except FileNotFoundError:
        if not follow:
            return
        while not os.path.exists(path):
            if running is not None and not running():
                return
            time.sleep(poll)
        handle = open(path, encoding="utf-8", errors="replace", newline="\n")  # noqa: SIM115
    with handle:
        data = handle.read()
        complete, _, rest = data.rpartition("\n")
        lines = [x for x in _records(complete, pending) if keep(x)]
        if tail is not None and tail >= 0:
            lines = list(deque(lines, maxlen=tail)) if tail else []
        yield from lines
        if not follow:
            return
        buffer = rest
        while True:
            data = handle.read()
            if data:
                buffer += data
                complete, _, buffer = buffer.rpartition("\n")
                for line in _records(complete, pending):
                    if keep(line):
                        yield line
                continue
            if running is not None and not running():
                data = handle.read()
                if data:
                    buffer += data
                    continue
                return
            time.sleep(poll)


__all__ = ["LogLine", "parse_since", "parse_timestamp", "read_logs"]
