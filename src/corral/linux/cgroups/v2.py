"""The cgroup v2 manager: one directory in the unified hierarchy.

Controllers must be enabled in every ancestor's cgroup.subtree_control before a
child gets their files (cgroup-v2.md); `create` enables what the configuration
needs, top-down, as runc's CreateCgroupPath does. Device rules become an eBPF
program; `cgroup.kill` kills everything at once; OOM kills are counted in
memory.events.
"""

from __future__ import annotations

import os

from corral.errors import InvalidArgument
from corral.linux.cgroups import (
    blkio,
    cpu,
    cpuset,
    devices,
    freezer,
    hugetlb,
    memory,
    net,
    rdma,
    unified,
)
from corral.linux.cgroups import pids as pids_controller
from corral.linux.cgroups.common import ControllerMissing, exists, read, write

_STATS_CONTROLLERS = frozenset({"cpu", "memory", "pids", "io"})


class V2Manager:
    version = 2

    def __init__(self, cgroup) -> None:
        self.cgroup = cgroup
        self.paths: dict[str, str] = cgroup.paths
        self.dir = cgroup.paths["unified"]

    def _plan(self, resources: dict) -> list[tuple[str, str, object]]:
        plan = []
        for controller, field, is_needed, setter in (
                ("cpuset", "cpu.cpus", cpuset.needed, cpuset.set_any),
                ("memory", "memory", memory.needed, memory.set_v2),
                ("cpu", "cpu", cpu.needed, cpu.set_v2),
                ("pids", "pids", pids_controller.needed, pids_controller.set_any),
                ("io", "blockIO", blkio.needed, blkio.set_v2),
                ("hugetlb", "hugepageLimits", hugetlb.needed, hugetlb.set_v2),
                ("rdma", "rdma", rdma.needed, rdma.set_any)):
            if is_needed(resources):
                plan.append((controller, field, setter))
        return plan

    def _parent(self) -> str:
        path = os.path.dirname(self.dir)
        while not os.path.isdir(path) and path != "/":
            path = os.path.dirname(path)
        return path

    def check(self, resources: dict) -> None:
        if net.needed_cls(resources) or net.needed_prio(resources):
            raise ControllerMissing("linux.resources.network: net_cls and net_prio do not exist "
                                    "on cgroup v2")
        cpu_settings = resources.get("cpu") or {}
        for key in ("realtimeRuntime", "realtimePeriod"):
            if cpu_settings.get(key):
                raise ControllerMissing(f"linux.resources.cpu.{key}: realtime settings are not "
                                        "supported on cgroup v2")
        available = set((read(self._parent(), "cgroup.controllers") or "").split())
        if os.path.isdir(self.dir):
            available |= set((read(self.dir, "cgroup.controllers") or "").split())
        for controller, field, _ in self._plan(resources):
            if controller not in available:
                raise ControllerMissing(f"linux.resources.{field}: the {controller} controller "
                                        "is not available on this cgroup v2 hierarchy")
        if resources.get("unified"):
            unified.check(self._parent(), resources)

    def create(self, resources: dict | None = None) -> None:
        """Enable the controllers the container needs (and the ones statistics come
        from) in every ancestor's subtree_control, top-down, then mkdir. A refusal
        (an ancestor with processes of its own) is left for check()/apply() to name."""
        # what the resources need, plus what `events --stats` reports on
        wanted = {c for c, _, _ in self._plan(resources or {})} | _STATS_CONTROLLERS
        wanted |= {k.split(".", 1)[0] for k in (resources or {}).get("unified") or {}}
        mount = _mount_point(self.dir)
        chain = []
        current = os.path.dirname(self.dir)
        while current.startswith(mount) and current != mount:
            chain.append(current)
            current = os.path.dirname(current)
        chain.append(mount)
        for directory in reversed(chain):
            os.makedirs(directory, exist_ok=True)
            available = set((read(directory, "cgroup.controllers") or "").split())
            enabled = set((read(directory, "cgroup.subtree_control") or "").split())
            missing = (wanted & available) - enabled
            if missing:
                try:
                    write(directory, "cgroup.subtree_control",
                          " ".join("+" + c for c in sorted(missing)), "cgroup")
                except Exception:  # noqa: BLE001, S110 - check() names what is then missing
                    pass
        os.makedirs(self.dir, exist_ok=True)

    def apply(self, resources: dict, device_list: list[dict] | None = None,
              checked: bool = False) -> None:
        """`checked`: the caller ran check_resources already (create does, first)."""
        if not checked:
            self.check(resources)
        for _, _, setter in self._plan(resources):
            setter(self.dir, resources)
        if resources.get("unified"):
            unified.set_any(self.dir, resources)
        if devices.needed(resources):
            devices.set_v2(self.dir, resources, device_list)

    def freezer_state_file(self) -> str | None:
        return freezer.state_file(self.paths)

    def pids(self) -> list[int]:
        return self.cgroup.pids()

    def kill_all(self, signal_number: int) -> None:
        if signal_number == 9 and exists(self.dir, "cgroup.kill"):
            write(self.dir, "cgroup.kill", 1, "cgroup.kill")
            return
        state = self.freezer_state_file()
        was_frozen = freezer.is_frozen(state)
        if not was_frozen:
            freezer.set_state(state, True)
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, signal_number)
                except ProcessLookupError:
                    pass
        finally:
            if not was_frozen:
                freezer.set_state(state, False)

    def stats(self) -> dict:
        data: dict = {"cpu": cpu.stats_v2(self.dir)}
        if exists(self.dir, "cpuset.cpus"):
            data["cpuset"] = cpuset.stats(self.dir)
        data["memory"] = memory.stats_v2(self.dir) if exists(self.dir, "memory.current") else {}
        if exists(self.dir, "pids.current"):
            data["pids"] = pids_controller.stats(self.dir)
        data["blkio"] = blkio.stats_v2(self.dir)
        data["hugetlb"] = hugetlb.stats_v2(self.dir)
        data["intel_rdt"] = {}
        data["network_interfaces"] = None
        return data

    def oom_watcher(self):
        from corral.linux.cgroups.events import V2OomWatcher

        return V2OomWatcher(self.dir) if exists(self.dir, "memory.events") else None


def _mount_point(path: str) -> str:
    from corral.linux.cgroups import detect

    for hierarchy in detect():
        if hierarchy.version == 2 and (path + "/").startswith(hierarchy.mount_point + "/"):
            return hierarchy.mount_point
    raise InvalidArgument(f"{path} is not in a cgroup v2 hierarchy")
