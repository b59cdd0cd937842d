"""cpuset (config-linux.md#cpu: `cpus`, `mems`): cpuset.cpus / cpuset.mems on v1 and v2."""

from __future__ import annotations

from corral.linux.cgroups.common import parse_list, read, read_int, write

CONTROLLER = "cpuset"


def needed(resources: dict) -> bool:
    cpu = resources.get("cpu") or {}
    return bool(cpu.get("cpus") or cpu.get("mems"))


def set_any(path: str, resources: dict) -> None:
    cpu = resources.get("cpu") or {}
    if cpu.get("cpus"):
        write(path, "cpuset.cpus", cpu["cpus"], "cpu.cpus")
    if cpu.get("mems"):
        write(path, "cpuset.mems", cpu["mems"], "cpu.mems")


def stats(path: str) -> dict:
    def numbers(name: str) -> list[int]:
        try:
            return parse_list(read(path, name) or "")
        except ValueError:
            return []

    result = {"cpus": numbers("cpuset.cpus"), "mems": numbers("cpuset.mems")}
    for key in ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                "memory_spread_page", "memory_spread_slab", "memory_pressure",
                "sched_load_balance", "sched_relax_domain_level"):
        if read(path, f"cpuset.{key}") is not None:
            result[key] = read_int(path, f"cpuset.{key}")
    return result
