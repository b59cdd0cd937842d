"""`events`: container statistics and OOM notifications as JSON lines (runc-events(8)).

`--stats` prints one {"type": "stats", "id": ..., "data": {...}} and exits; otherwise
stats are printed every `--interval` (a Go duration, default 5s) and an
{"type": "oom", "id": ...} line for every OOM kill in the container's memory
cgroup, until the container stops.
"""

from __future__ import annotations

import os
import re
import sys
import time

from corral.errors import FailedPrecondition, InvalidArgument
from corral.linux.cgroups import Cgroup, manager_for
from corral.runtime.state import Container

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for the units runc users write: "5s", "100ms", "1m30s"."""
    text = text.strip()
    if not text or _DURATION.sub("", text):
        raise InvalidArgument(f"--interval: invalid duration {text!r} (e.g. 5s, 500ms)")
    seconds = sum(float(n) * _SECONDS[u] for n, u in _DURATION.findall(text))
    if seconds <= 0:
        raise InvalidArgument("--interval: duration must be greater than 0")
    return seconds


def _emit(event: dict) -> None:
    from corral.oci.runtime_config import dumps

    sys.stdout.write(dumps(event).replace("\n", "") + "\n")
    sys.stdout.flush()


def stats_event(container: Container) -> dict:
    manager = manager_for(Cgroup(container.data.get("cgroup_paths") or {}))
    return {"type": "stats", "id": container.id, "data": manager.stats()}


def events(root: str, container_id: str, interval: float = 5.0, stats_only: bool = False) -> int:
    container = Container.load(root, container_id)
    if container.status() == "stopped":
        raise FailedPrecondition(f"container with id {container_id} is not running")
    if stats_only:
        _emit(stats_event(container))
        return 0
    manager = manager_for(Cgroup(container.data.get("cgroup_paths") or {}))
    try:
        watcher = manager.oom_watcher()
    except OSError as exc:
        os.write(2, f"corral-runtime: warning: no OOM notifications: {exc}\n".encode())
        watcher = None
    next_stats = time.monotonic()
    try:
        while container.init_alive():
            now = time.monotonic()
            if now >= next_stats:
                _emit(stats_event(container))
                next_stats = now + interval
            timeout = min(next_stats - time.monotonic(), 0.2)
            count = watcher.wait(timeout) if watcher is not None else 0
            if watcher is None:
                time.sleep(max(timeout, 0))
            if count < 0:
                break
            for _ in range(count):
                _emit({"type": "oom", "id": container.id})
        if watcher is not None:  # an OOM that ended the container
            for _ in range(max(watcher.wait(0), 0)):
                _emit({"type": "oom", "id": container.id})
    except BrokenPipeError:
        return 0
    finally:
        if watcher is not None:
            watcher.close()
    return 0
