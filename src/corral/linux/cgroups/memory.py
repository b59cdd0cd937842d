"""Memory controller (config-linux.md#memory).

v1: memory.limit_in_bytes, memory.memsw.limit_in_bytes (limit+swap), soft limit,
kmem.tcp, swappiness, oom_control, use_hierarchy. v2: memory.max, memory.low,
memory.swap.max (swap only, so `swap - limit` as runc converts it).
`kernel` is ignored with a warning (kernel memory limits are gone from the kernel).
"""

from __future__ import annotations

from corral.errors import InvalidArgument
from corral.linux.cgroups.common import (
    exists,
    flat_keyed,
    max_or,
    read,
    read_int,
    warn,
    write,
)

CONTROLLER = "memory"
_KEYS = ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
         "disableOOMKiller", "useHierarchy")


def needed(resources: dict) -> bool:
    memory = resources.get("memory") or {}
    return any(memory.get(k) is not None for k in _KEYS)


def swap_to_v2(swap: int | None, limit: int | None) -> int | None:
    """runc's ConvertMemorySwapToCgroupV2Value: v1 swap is memory+swap, v2 is swap alone.
    None/0 = unset, -1 = unlimited."""
    swap = swap or 0
    limit = limit or 0
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap or None
    if limit in (0, -1):
        raise InvalidArgument("linux.resources.memory.swap: a swap limit needs a memory limit")
    if swap < limit:
        raise InvalidArgument(f"linux.resources.memory.swap: memory+swap limit {swap} must be "
                              f">= memory.limit {limit}")
    return swap - limit


def _check_usage(path: str, usage_file: str, limit: int | None) -> None:
    if limit is not None and limit > 0:
        usage = read_int(path, usage_file)
        if usage > limit:
            raise InvalidArgument(f"linux.resources.memory.limit: {limit} is below the current "
                                  f"usage {usage} (checkBeforeUpdate)")


def set_v1(path: str, resources: dict) -> None:
    memory = resources.get("memory") or {}
    limit, swap = memory.get("limit"), memory.get("swap")
    if memory.get("kernel") is not None:
        warn("linux.resources.memory.kernel is ignored: kernel memory limits are deprecated "
             "and not supported")
    if memory.get("checkBeforeUpdate"):
        _check_usage(path, "memory.usage_in_bytes", limit)
    has_swap = exists(path, "memory.memsw.limit_in_bytes")
    if limit == -1 and swap is None and has_swap:
        swap = -1
    if swap is not None and not has_swap:
        if swap not in (0, -1):
            warn("linux.resources.memory.swap is ignored: the kernel has no swap accounting "
                 "(memory.memsw.limit_in_bytes)")
        swap = None
    # The kernel insists on limit <= memsw at every moment: order the writes (runc's
    # setMemoryAndSwap).
    if limit and swap and (swap == -1 or read_int(path, "memory.limit_in_bytes") < swap):
        write(path, "memory.memsw.limit_in_bytes", swap, "memory.swap")
        write(path, "memory.limit_in_bytes", limit, "memory.limit")
    else:
        if limit:
            write(path, "memory.limit_in_bytes", limit, "memory.limit")
        if swap:
            write(path, "memory.memsw.limit_in_bytes", swap, "memory.swap")
    if memory.get("reservation"):
        write(path, "memory.soft_limit_in_bytes", memory["reservation"], "memory.reservation")
    if memory.get("kernelTCP"):
        write(path, "memory.kmem.tcp.limit_in_bytes", memory["kernelTCP"], "memory.kernelTCP")
    if memory.get("swappiness") is not None:
        write(path, "memory.swappiness", memory["swappiness"], "memory.swappiness")
    if memory.get("disableOOMKiller"):
        write(path, "memory.oom_control", 1, "memory.disableOOMKiller")
    if (memory.get("useHierarchy") is not None
            and read_int(path, "memory.use_hierarchy") != int(memory["useHierarchy"])):
        write(path, "memory.use_hierarchy", int(memory["useHierarchy"]),
                  "memory.useHierarchy")


def set_v2(path: str, resources: dict) -> None:
    memory = resources.get("memory") or {}
    limit = memory.get("limit")
    if memory.get("checkBeforeUpdate"):
        _check_usage(path, "memory.current", limit)
    swap = swap_to_v2(memory.get("swap"), limit)
    if swap is not None:
        if not exists(path, "memory.swap.max"):
            if swap > 0:
                raise InvalidArgument("linux.resources.memory.swap: the kernel has no swap "
                                      "accounting (memory.swap.max)")
        else:
            write(path, "memory.swap.max", max_or(swap), "memory.swap")
    if limit:
        write(path, "memory.max", max_or(limit), "memory.limit")
    if memory.get("reservation"):
        write(path, "memory.low", max_or(memory["reservation"]), "memory.reservation")
    for key in ("kernel", "kernelTCP", "swappiness", "disableOOMKiller", "useHierarchy"):
        if memory.get(key) not in (None, False, 0) and key != "useHierarchy":
            warn(f"linux.resources.memory.{key} is ignored on cgroup v2")


def _entry(path: str, prefix: str) -> dict:
    return {"limit": read_int(path, f"{prefix}limit_in_bytes"),
            "usage": read_int(path, f"{prefix}usage_in_bytes"),
            "max": read_int(path, f"{prefix}max_usage_in_bytes"),
            "failcnt": read_int(path, f"{prefix}failcnt")}


def stats_v1(path: str) -> dict:
    stats = {"usage": _entry(path, "memory."), "swap": _entry(path, "memory.memsw."),
             "kernel": _entry(path, "memory.kmem."),
             "kernelTCP": {"limit": read_int(path, "memory.kmem.tcp.limit_in_bytes"),
                           "failcnt": read_int(path, "memory.kmem.tcp.failcnt")},
             "raw": flat_keyed(read(path, "memory.stat"))}
    raw = stats["raw"]
    stats["cache"] = raw.get("total_cache", raw.get("cache", 0))
    if not stats["cache"]:
        del stats["cache"]
    return stats


def stats_v2(path: str) -> dict:
    raw = flat_keyed(read(path, "memory.stat"))
    events = flat_keyed(read(path, "memory.events"))
    usage = read_int(path, "memory.current")
    swap_usage = read_int(path, "memory.swap.current")
    return {"usage": {"limit": read_int(path, "memory.max"), "usage": usage,
                      "max": read_int(path, "memory.peak"), "failcnt": events.get("max", 0)},
            "swap": {"limit": read_int(path, "memory.swap.max"),
                     "usage": usage + swap_usage, "max": read_int(path, "memory.swap.peak"),
                     "failcnt": 0},
            "kernel": {}, "kernelTCP": {}, "raw": raw,
            "cache": raw.get("file", 0)}
