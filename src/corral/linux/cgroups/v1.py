"""The cgroup v1 manager: one directory per mounted hierarchy, one controller module
per resource. On a hybrid host the controller-less v2 mount ("unified") is kept
for `unified` keys (written there verbatim) and the clone3 placement; limits go
to the v1 controllers, as runc's fs manager does."""

from __future__ import annotations

import os
import sys

from corral.linux.cgroups import devices, freezer, unified
from corral.linux.cgroups.common import ControllerMissing, read

# (controller, field, key of linux.resources, module, needed(), setter): a controller's
# module is imported only when its key is present (each import costs every create).
_PLAN = (
    ("memory", "memory", "memory", "memory", "needed", "set_v1"),
    ("cpu", "cpu", "cpu", "cpu", "needed", "set_v1"),
    ("cpuset", "cpu.cpus", "cpu", "cpuset", "needed", "set_any"),
    ("pids", "pids", "pids", "pids", "needed", "set_any"),
    ("blkio", "blockIO", "blockIO", "blkio", "needed", "set_v1"),
    ("hugetlb", "hugepageLimits", "hugepageLimits", "hugetlb", "needed", "set_v1"),
    ("net_cls", "network.classID", "network", "net", "needed_cls", "set_cls"),
    ("net_prio", "network.priorities", "network", "net", "needed_prio", "set_prio"),
    ("rdma", "rdma", "rdma", "rdma", "needed", "set_any"),
)


def _controller(name: str):
    name = f"corral.linux.cgroups.{name}"
    __import__(name)  # not importlib.import_module: importlib costs a ms to import
    return sys.modules[name]


class V1Manager:
    version = 1

    def __init__(self, cgroup) -> None:
        self.cgroup = cgroup
        self.paths: dict[str, str] = cgroup.paths

    def path(self, controller: str) -> str | None:
        for name, path in self.paths.items():
            if name != "unified" and controller in name.split(","):
                return path
        return None

    # -- limits ---------------------------------------------------------------
    def _plan(self, resources: dict) -> list[tuple[str, str, object]]:
        """(controller, field, setter) for every part of `resources` that is set."""
        plan = []
        for controller, field, key, module_name, needed, setter in _PLAN:
            if not resources.get(key):
                continue
            module = _controller(module_name)
            if getattr(module, needed)(resources):
                plan.append((controller, field, getattr(module, setter)))
        return plan

    def check(self, resources: dict) -> None:
        """Every controller the resources need is mounted (before anything is made)."""
        for controller, field, _ in self._plan(resources):
            if self.path(controller) is None:
                raise ControllerMissing(f"linux.resources.{field}: the host has no {controller} "
                                        "cgroup controller")
        if resources.get("unified"):
            path = self.paths.get("unified")
            if path is None:
                raise ControllerMissing("linux.resources.unified: cgroup v2 files cannot be set "
                                        "on a cgroup v1 host")
            unified.check(_existing_ancestor(os.path.dirname(path)), resources)
        if devices.needed(resources) and self.path("devices") is None:
            raise ControllerMissing("linux.resources.devices: the host has no devices cgroup "
                                    "controller")

    def apply(self, resources: dict, device_list: list[dict] | None = None,
              checked: bool = False) -> None:
        """`checked`: the caller ran check_resources already (create does, first)."""
        if not checked:
            self.check(resources)
        for controller, _, setter in self._plan(resources):
            setter(self.path(controller), resources)
        if resources.get("unified"):
            unified.set_any(self.paths["unified"], resources)
        if devices.needed(resources):
            devices.set_v1(self.path("devices"), resources, device_list)

    # -- processes --------------------------------------------------------------
    def freezer_state_file(self) -> str | None:
        return freezer.state_file(self.paths)

    def pids(self) -> list[int]:
        return self.cgroup.pids()

    def kill_all(self, signal_number: int) -> None:
        """runc's signalAllProcesses: freeze, signal every task, thaw (so nothing forks
        in between and SIGKILL is delivered to thawed tasks)."""
        state = self.freezer_state_file()
        was_frozen = freezer.is_frozen(state)
        if state and not was_frozen:
            try:
                freezer.set_state(state, True)
            except (OSError, Exception):  # noqa: BLE001 - signalling matters more
                state = None
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, signal_number)
                except ProcessLookupError:
                    pass
        finally:
            if state and (not was_frozen or signal_number == 9):
                freezer.set_state(state, False)

    # -- statistics and events -------------------------------------------------------
    def stats(self) -> dict:
        from corral.linux.cgroups import blkio, cpu, cpuset, hugetlb, memory
        from corral.linux.cgroups import pids as pids_controller

        data: dict = {"cpu": cpu.stats_v1(self.path("cpu"), self.path("cpuacct"))}
        if self.path("cpuset"):
            data["cpuset"] = cpuset.stats(self.path("cpuset"))
        data["memory"] = memory.stats_v1(self.path("memory")) if self.path("memory") else {}
        if self.path("pids"):
            data["pids"] = pids_controller.stats(self.path("pids"))
        data["blkio"] = blkio.stats_v1(self.path("blkio")) if self.path("blkio") else {}
        data["hugetlb"] = hugetlb.stats_v1(self.path("hugetlb")) if self.path("hugetlb") else {}
        data["intel_rdt"] = {}
        data["network_interfaces"] = None
        return data

    def oom_watcher(self):
        from corral.linux.cgroups.events import V1OomWatcher

        path = self.path("memory")
        return V1OomWatcher(path) if path else None


def _existing_ancestor(path: str) -> str:
    while not os.path.isdir(path) and path != "/":
        path = os.path.dirname(path)
    return path


__all__ = ["V1Manager", "read"]
