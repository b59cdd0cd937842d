"""`delete`: remove a stopped container's resources (runtime.md#delete).

With --force a running container is killed first (all its processes, through its
cgroup). The cgroup goes, poststop hooks run, then the state directory goes.
"""

from __future__ import annotations

import os
import time

from corral.errors import FailedPrecondition
from corral.linux.cgroups import Cgroup
from corral.runtime import hooks
from corral.runtime.state import Container


def delete(root: str, container_id: str, force: bool = False) -> None:
    container = Container.load(root, container_id)
    status = container.status()
    if status in ("running", "paused") and not force:
        raise FailedPrecondition(f"container {container_id!r} is {status}: stop it first or "
                                 "use --force")
    cgroup = Cgroup(container.data.get("cgroup_paths") or {})
    if status != "stopped":
        _kill_everything(container, cgroup)
    for pid in cgroup.pids():  # processes left behind when the init shared the host's pid ns
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    cgroup.destroy()
    config = container.data.get("config") or {}
    if (config.get("hooks") or {}).get("poststop"):
        state = container.oci_state()
        state["status"] = "stopped"
        try:
            hooks.run_all(config, "poststop", state)
        except hooks.HookFailed as exc:
            os.write(2, f"warning: {exc}\n".encode())
    container.remove_dir()


def _kill_everything(container: Container, cgroup: Cgroup) -> None:
    """SIGKILL through the cgroup manager (v2: cgroup.kill; v1: freeze, kill, thaw)."""
    from corral.linux.cgroups import manager_for

    try:
        manager_for(cgroup).kill_all(9)
    except Exception:  # noqa: BLE001 - fall back to signalling what we can see
        frozen = container.status() == "paused"
        for pid in set(cgroup.pids()) | {container.pid}:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if frozen and container.data.get("freezer_state_file"):
            path = container.data["freezer_state_file"]
            with open(path, "w") as f:
                f.write("THAWED" if path.endswith("freezer.state") else "0")
    try:
        os.kill(container.pid, 9)  # an init outside its cgroup
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while container.init_alive() and time.monotonic() < deadline:
        time.sleep(0.002)
    if container.init_alive():
        raise FailedPrecondition(f"container {container.id!r}: init {container.pid} survived "
                                 "SIGKILL")
