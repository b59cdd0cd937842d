"""`kill`: send a signal to the container's init, or with --all to every process
in its cgroup (runtime.md#kill): the cgroup manager freezes, signals and thaws
(v1), or writes cgroup.kill for SIGKILL (v2)."""

from __future__ import annotations

import os

from corral.errors import FailedPrecondition
from corral.linux.cgroups import Cgroup, manager_for
from corral.runtime.state import Container


def kill(root: str, container_id: str, signal_number: int, all_processes: bool = False) -> None:
    container = Container.load(root, container_id)
    status = container.status()
    if all_processes:
        manager = manager_for(Cgroup(container.data.get("cgroup_paths") or {}))
        alive = container.init_alive()
        if manager.pids() or alive:
            manager.kill_all(signal_number)
        if alive and container.pid not in manager.pids():  # init outside its cgroup
            try:
                os.kill(container.pid, signal_number)
            except ProcessLookupError:
                pass
        return
    if status not in ("created", "running", "paused"):
        raise FailedPrecondition(f"container {container_id!r} is {status}: cannot signal it")
    try:
        os.kill(container.pid, signal_number)
    except ProcessLookupError:
        raise FailedPrecondition(f"container {container_id!r} is not running") from None
