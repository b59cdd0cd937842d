"""Network (config-linux.md#network): v1 only — net_cls.classid and net_prio.ifpriomap.
cgroup v2 has neither (classification moved to eBPF), so v2 reports an error."""

from __future__ import annotations

from corral.linux.cgroups.common import write


def needed_cls(resources: dict) -> bool:
    return (resources.get("network") or {}).get("classID") is not None


def needed_prio(resources: dict) -> bool:
    return bool((resources.get("network") or {}).get("priorities"))


def set_cls(path: str, resources: dict) -> None:
    write(path, "net_cls.classid", resources["network"]["classID"], "network.classID")


def set_prio(path: str, resources: dict) -> None:
    for index, entry in enumerate(resources["network"]["priorities"]):
        write(path, "net_prio.ifpriomap", f"{entry['name']} {entry['priority']}",
              f"network.priorities[{index}]")
