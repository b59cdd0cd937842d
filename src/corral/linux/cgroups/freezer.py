"""Freezing a cgroup (runc-pause(8)): v1 freezer.state FROZEN/THAWED, v2 cgroup.freeze.

Both wait until the kernel reports the whole cgroup frozen (v1 FREEZING -> FROZEN;
v2 "frozen 1" in cgroup.events), re-requesting the state while waiting as runc
does: a task forking during the freeze can leave v1 stuck in FREEZING.
"""

from __future__ import annotations

import os
import time

from corral.errors import FailedPrecondition
from corral.linux.cgroups.common import flat_keyed, read


def state_file(paths: dict[str, str]) -> str | None:
    if "freezer" in paths:
        return os.path.join(paths["freezer"], "freezer.state")
    if "unified" in paths:
        return os.path.join(paths["unified"], "cgroup.freeze")
    return None


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def set_state(state_path: str, frozen: bool, timeout: float = 10.0) -> None:
    v1 = state_path.endswith("freezer.state")
    directory = os.path.dirname(state_path)
    value = ("FROZEN" if frozen else "THAWED") if v1 else ("1" if frozen else "0")
    _write(state_path, value)
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        if v1:
            current = (read(directory, "freezer.state") or "").strip()
            done = current == value
        else:
            events = flat_keyed(read(directory, "cgroup.events"))
            done = events.get("frozen", 0) == (1 if frozen else 0) or "frozen" not in events
        if done:
            return
        if time.monotonic() > deadline:
            raise FailedPrecondition(f"cgroup {directory}: {'freezing' if frozen else 'thawing'} "
                                     "timed out")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
        if v1:
            _write(state_path, value)


def is_frozen(state_path: str | None) -> bool:
    if not state_path:
        return False
    value = (read(os.path.dirname(state_path), os.path.basename(state_path)) or "").strip()
    return value in ("FROZEN", "1")
