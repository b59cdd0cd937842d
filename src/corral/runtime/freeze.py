"""`pause` and `resume`: the cgroup freezer (v1 freezer.state, v2 cgroup.freeze)."""

from __future__ import annotations

import time

from corral.errors import FailedPrecondition, Unavailable
from corral.runtime.state import Container


def set_frozen(root: str, container_id: str, frozen: bool) -> None:
    container = Container.load(root, container_id)
    status = container.status()
    wanted_from = "running" if frozen else "paused"
    if status != wanted_from:
        raise FailedPrecondition(f"container {container_id!r} is {status}, not {wanted_from}")
    path = container.data.get("freezer_state_file")
    if not path:
        raise Unavailable(f"container {container_id!r}: the host has no cgroup freezer")
    v1 = path.endswith("freezer.state")
    value = ("FROZEN" if frozen else "THAWED") if v1 else ("1" if frozen else "0")
    with open(path, "w") as f:
        f.write(value)
    if v1 and frozen:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(path) as f:
                if f.read().strip() == "FROZEN":
                    return
            time.sleep(0.001)
            with open(path, "w") as f:
                f.write("FROZEN")
        raise FailedPrecondition(f"container {container_id!r}: freezing timed out")
