"""`pause` and `resume`: the cgroup freezer (v1 freezer.state, v2 cgroup.freeze),
waiting until the kernel reports every task frozen (or thawed)."""

from __future__ import annotations

from corral.errors import FailedPrecondition, Unavailable
from corral.linux.cgroups import freezer
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
    freezer.set_state(path, frozen)
