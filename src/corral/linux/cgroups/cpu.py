"""CPU bandwidth and weight (config-linux.md#cpu).

v1 cpu: cpu.shares, cpu.cfs_quota_us/period_us, cpu.cfs_burst_us, cpu.rt_runtime_us/
period_us (only where the kernel has RT group scheduling), cpu.idle.
v2 cpu: cpu.weight (from shares, runc's conversion), cpu.max "quota period",
cpu.max.burst, cpu.idle. Realtime settings have no v2 equivalent: error, as runc.
"""

from __future__ import annotations

from corral.errors import InvalidArgument, Unavailable
from corral.linux.cgroups.common import exists, flat_keyed, max_or, read, read_int, write

CONTROLLER = "cpu"
_KEYS = ("shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod", "idle")


def needed(resources: dict) -> bool:
    cpu = resources.get("cpu") or {}
    return any(cpu.get(k) not in (None, 0) for k in _KEYS) or cpu.get("idle") is not None


def shares_to_weight(shares: int) -> int:
    """runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] onto [1, 10000]; 0 = unset."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def set_v1(path: str, resources: dict) -> None:
    cpu = resources.get("cpu") or {}
    if cpu.get("shares"):
        write(path, "cpu.shares", cpu["shares"], "cpu.shares")
        got = read_int(path, "cpu.shares")
        if got != cpu["shares"]:
            raise InvalidArgument(f"linux.resources.cpu.shares: {cpu['shares']} is out of the "
                                  f"kernel's range (it set {got})")
    # period before quota when growing, quota before period when shrinking: write
    # period, and retry quota after it if the first quota write was refused.
    quota, period = cpu.get("quota"), cpu.get("period")
    if period:
        try:
            write(path, "cpu.cfs_period_us", period, "cpu.period")
        except InvalidArgument:
            if not quota:
                raise
            write(path, "cpu.cfs_quota_us", quota, "cpu.quota")
            write(path, "cpu.cfs_period_us", period, "cpu.period")
    if quota:
        write(path, "cpu.cfs_quota_us", quota, "cpu.quota")
    if cpu.get("burst") is not None:
        if not exists(path, "cpu.cfs_burst_us"):
            raise Unavailable("linux.resources.cpu.burst: the kernel has no cpu.cfs_burst_us")
        write(path, "cpu.cfs_burst_us", cpu["burst"], "cpu.burst")
    for key, name in (("realtimePeriod", "cpu.rt_period_us"),
                      ("realtimeRuntime", "cpu.rt_runtime_us")):
        if cpu.get(key):
            if not exists(path, name):
                raise Unavailable(f"linux.resources.cpu.{key}: the kernel has no realtime group "
                                  f"scheduling ({name})")
            write(path, name, cpu[key], f"cpu.{key}")
    if cpu.get("idle") is not None:
        if not exists(path, "cpu.idle"):
            raise Unavailable("linux.resources.cpu.idle: the kernel has no cpu.idle")
        write(path, "cpu.idle", cpu["idle"], "cpu.idle")


def set_v2(path: str, resources: dict) -> None:
    cpu = resources.get("cpu") or {}
    for key in ("realtimeRuntime", "realtimePeriod"):
        if cpu.get(key):
            raise Unavailable(f"linux.resources.cpu.{key}: realtime settings are not supported "
                              "on cgroup v2")
    if cpu.get("idle") is not None:
        write(path, "cpu.idle", cpu["idle"], "cpu.idle")
    if cpu.get("shares") and not cpu.get("idle"):
        write(path, "cpu.weight", shares_to_weight(cpu["shares"]), "cpu.shares")
    quota, period = cpu.get("quota"), cpu.get("period")
    if quota or period:
        current = (read(path, "cpu.max") or "max 100000").split()
        quota_text = max_or(quota) if quota else current[0]
        write(path, "cpu.max", f"{quota_text} {period or current[1]}", "cpu.quota")
    if cpu.get("burst") is not None:
        write(path, "cpu.max.burst", cpu["burst"], "cpu.burst")


def stats_v1(cpu_path: str | None, cpuacct_path: str | None) -> dict:
    usage: dict = {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [],
                   "kernel": 0, "user": 0}
    if cpuacct_path:
        usage["total"] = read_int(cpuacct_path, "cpuacct.usage")
        usage["percpu"] = [int(x) for x in (read(cpuacct_path, "cpuacct.usage_percpu")
                                            or "").split()]
        rows = (read(cpuacct_path, "cpuacct.usage_all") or "").splitlines()[1:]
        usage["percpu_kernel"] = [int(r.split()[2]) for r in rows if len(r.split()) == 3]
        usage["percpu_user"] = [int(r.split()[1]) for r in rows if len(r.split()) == 3]
        ticks = flat_keyed(read(cpuacct_path, "cpuacct.stat"))
        usage["kernel"] = ticks.get("system", 0) * 10_000_000  # USER_HZ=100 ticks -> ns
        usage["user"] = ticks.get("user", 0) * 10_000_000
    stat = flat_keyed(read(cpu_path, "cpu.stat")) if cpu_path else {}
    throttling = {k: v for k, v in (("periods", stat.get("nr_periods", 0)),
                                    ("throttled_periods", stat.get("nr_throttled", 0)),
                                    ("throttled_time", stat.get("throttled_time", 0))) if v}
    return {"usage": usage, "throttling": throttling}


def stats_v2(path: str) -> dict:
    stat = flat_keyed(read(path, "cpu.stat"))
    usage = {"total": stat.get("usage_usec", 0) * 1000,
             "kernel": stat.get("system_usec", 0) * 1000,
             "user": stat.get("user_usec", 0) * 1000}
    throttling = {k: v for k, v in (("periods", stat.get("nr_periods", 0)),
                                    ("throttled_periods", stat.get("nr_throttled", 0)),
                                    ("throttled_time", stat.get("throttled_usec", 0) * 1000))
                  if v}
    return {"usage": usage, "throttling": throttling}
