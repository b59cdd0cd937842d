"""CRI metrics: ListMetricDescriptors / ListPodSandboxMetrics, cAdvisor's names read
straight from the cgroup files of each container and the pod's network namespace.

A container's cgroups are found from its init process (`/proc/<pid>/cgroup`, one line
per hierarchy) and the hierarchies mounted on this host (`corral.linux.cgroups.detect`:
v1, v2 or hybrid, never assumed); the linux layer's manager reads them into runc's
stats shape (the shape `stats.py` parses for ContainerStats), and the limits are read
from the controllers' own files (v1 `memory.limit_in_bytes`, `cpu.cfs_quota_us`, ...;
v2 `memory.max`, `cpu.max`, `cpu.weight`). The pod's network counters come from
`/proc/<infra pid>/net/dev` (the pod's netns; none for a hostNetwork pod).

Every metric is read live (timestamp 0, as the CRI asks). Values are `UInt64Value`s,
so the `*_seconds_total` counters are whole seconds (as CRI-O reports them); an
unlimited limit is 0 (as cAdvisor reports cgroup v2's "max").

Labels: a container's metrics carry `id` (the container id), `name` (its CRI name)
and `image` (the image asked for); the pod's network metrics `id` (the sandbox id),
`name` ("POD"), `image` (the pause image) and `interface`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.cri._gen import api_pb2 as pb

BASE_LABELS = ("id", "name", "image")
NS_PER_SECOND = 1_000_000_000
UNLIMITED = 1 << 62  # v1's "no limit" is PAGE_COUNTER_MAX pages: anything above is none


@dataclass(frozen=True)
class Descriptor:
    name: str
    help: str
    kind: Any  # pb.COUNTER or pb.GAUGE (a MetricType)
    labels: tuple[str, ...] = BASE_LABELS
    #: container metrics: sample -> [(extra label values, value)]
    value: Callable[[dict], list[tuple[tuple[str, ...], int]]] | None = None


def _one(read: Callable[[dict], int]) -> Callable[[dict], list[tuple[tuple[str, ...], int]]]:
    return lambda s: [((), max(0, int(read(s))))]


def _cpu(key: str) -> Callable[[dict], int]:
    return lambda s: int(((s["cpu"].get("usage") or {}).get(key)) or 0) // NS_PER_SECOND


def _mem(key: str) -> Callable[[dict], int]:
    return lambda s: int((s["memory"].get("usage") or {}).get(key) or 0)


def _raw(*keys: str) -> Callable[[dict], int]:
    """The first of `keys` in memory.stat (v1's hierarchical total_* first)."""
    def read(s: dict) -> int:
        raw = s["memory"].get("raw") or {}
        for key in keys:
            if key in raw:
                return int(raw[key] or 0)
        return 0

    return read


def working_set(s: dict) -> int:
    """usage - inactive_file (kubelet's and cAdvisor's working set)."""
    usage = _mem("usage")(s)
    return max(0, usage - _raw("total_inactive_file", "inactive_file")(s))


CONTAINER_METRICS = (
    Descriptor("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.",
               pb.COUNTER, BASE_LABELS + ("cpu",),
               lambda s: [(("total",), _cpu("total")(s))]),
    Descriptor("container_cpu_user_seconds_total",
               "Cumulative user cpu time consumed in seconds.", pb.COUNTER,
               value=_one(_cpu("user"))),
    Descriptor("container_cpu_system_seconds_total",
               "Cumulative system cpu time consumed in seconds.", pb.COUNTER,
               value=_one(_cpu("kernel"))),
    Descriptor("container_cpu_cfs_throttled_periods_total",
               "Number of throttled period intervals.", pb.COUNTER,
               value=_one(lambda s: (s["cpu"].get("throttling") or {}).get(
                   "throttled_periods", 0))),
    Descriptor("container_memory_usage_bytes",
               "Current memory usage in bytes, including all memory regardless of when it "
               "was accessed.", pb.GAUGE, value=_one(_mem("usage"))),
    Descriptor("container_memory_working_set_bytes", "Current working set in bytes.",
               pb.GAUGE, value=_one(working_set)),
    Descriptor("container_memory_rss", "Size of RSS in bytes.", pb.GAUGE,
               value=_one(_raw("total_rss", "rss", "anon"))),
    Descriptor("container_memory_cache", "Number of bytes of page cache memory.", pb.GAUGE,
               value=_one(_raw("total_cache", "cache", "file"))),
    Descriptor("container_memory_mapped_file", "Size of memory mapped files in bytes.",
               pb.GAUGE, value=_one(_raw("total_mapped_file", "mapped_file", "file_mapped"))),
    Descriptor("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.",
               pb.GAUGE, value=_one(_mem("max"))),
    Descriptor("container_memory_failcnt", "Number of memory usage hits limits.", pb.COUNTER,
               value=_one(_mem("failcnt"))),
    Descriptor("container_oom_events_total", "Count of out of memory events observed for "
               "the container.", pb.COUNTER, value=_one(lambda s: s["oom_kills"])),
    Descriptor("container_spec_memory_limit_bytes", "Memory limit for the container "
               "(0: none).", pb.GAUGE, value=_one(lambda s: s["spec"]["memory_limit"])),
    Descriptor("container_spec_cpu_quota", "CPU quota of the container (0: none).",
               pb.GAUGE, value=_one(lambda s: s["spec"]["cpu_quota"])),
    Descriptor("container_spec_cpu_period", "CPU period of the container.", pb.GAUGE,
               value=_one(lambda s: s["spec"]["cpu_period"])),
    Descriptor("container_spec_cpu_shares", "CPU share of the container.", pb.GAUGE,
               value=_one(lambda s: s["spec"]["cpu_shares"])),
    Descriptor("container_processes", "Number of processes running inside the container.",
               pb.GAUGE, value=_one(lambda s: len(s["pids"]))),
    Descriptor("container_threads", "Number of threads running inside the container.",
               pb.GAUGE, value=_one(lambda s: s["threads"])),
    Descriptor("container_start_time_seconds", "Start time of the container since unix "
               "epoch in seconds.", pb.GAUGE, value=_one(lambda s: s["started_at"])),
)

#: /proc/net/dev columns (after "iface:") of each network metric
_NET_COLUMNS = (
    ("container_network_receive_bytes_total", "Cumulative count of bytes received.", 0),
    ("container_network_receive_packets_total", "Cumulative count of packets received.", 1),
    ("container_network_receive_errors_total",
     "Cumulative count of errors encountered while receiving.", 2),
    ("container_network_receive_packets_dropped_total",
     "Cumulative count of packets dropped while receiving.", 3),
    ("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", 8),
    ("container_network_transmit_packets_total",
     "Cumulative count of packets transmitted.", 9),
    ("container_network_transmit_errors_total",
     "Cumulative count of errors encountered while transmitting.", 10),
    ("container_network_transmit_packets_dropped_total",
     "Cumulative count of packets dropped while transmitting.", 11),
)
POD_METRICS = tuple(Descriptor(name, text, pb.COUNTER, BASE_LABELS + ("interface",))
                    for name, text, _ in _NET_COLUMNS)


def descriptors() -> list[Any]:
    """Every MetricDescriptor ListPodSandboxMetrics may use (a static list)."""
    return [pb.MetricDescriptor(name=d.name, help=d.help, label_keys=list(d.labels))
            for d in CONTAINER_METRICS + POD_METRICS]


# -- cgroups -------------------------------------------------------------------------------
def cgroup_paths(pid: int) -> dict[str, str]:
    """{hierarchy name: directory} of process `pid`'s cgroups on this host's mounts."""
    from corral.linux.cgroups import detect

    own: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers if number != "0" else ""] = path
    paths = {}
    for h in detect():
        key = "" if h.version == 2 else ",".join(h.controllers)
        if key in own:
            paths[h.name] = h.mount_point + own[key].rstrip("/")
    return paths


def _read(directory: str | None, name: str) -> str | None:
    if not directory:
        return None
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read().strip()
    except OSError:
        return None


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def spec_limits(manager: Any) -> dict[str, int]:
    """The limits in force: memory limit (0: none), cpu quota (0: none), period and
    shares (v2: cpu.weight converted back to shares as cAdvisor does)."""
    if manager.version == 1:
        limit = _int(_read(manager.path("memory"), "memory.limit_in_bytes"))
        cpu = manager.path("cpu")
        quota = _int(_read(cpu, "cpu.cfs_quota_us"))
        period = _int(_read(cpu, "cpu.cfs_period_us"))
        shares = _int(_read(cpu, "cpu.shares"))
    else:
        d = manager.dir
        text = _read(d, "memory.max") or "max"
        limit = 0 if text == "max" else _int(text)
        q, _, p = (_read(d, "cpu.max") or "max 100000").partition(" ")
        quota, period = (0 if q == "max" else _int(q)), _int(p)
        weight = _int(_read(d, "cpu.weight"))
        shares = 2 + ((weight - 1) * 262142) // 9999 if weight else 0
    return {"memory_limit": 0 if limit >= UNLIMITED else limit,
            "cpu_quota": max(0, quota), "cpu_period": period, "cpu_shares": shares}


def _oom_kills(manager: Any) -> int:
    if manager.version == 1:
        text = _read(manager.path("memory"), "memory.oom_control") or ""
    else:
        text = _read(manager.dir, "memory.events") or ""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return _int(value)
    return 0


def _threads(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/stat") as f:
            # the fields after the command (which may hold spaces): num_threads is 20th
            total += int(f.read().rpartition(")")[2].split()[17])
    return total


def sample(pid: int) -> dict | None:
    """Everything the container metrics need, from the cgroups of `pid` (None when the
    process is gone)."""
    from corral.linux.cgroups import Cgroup, manager_for

    try:
        paths = cgroup_paths(pid)
    except OSError:
        return None
    if not paths:
        return None
    manager = manager_for(Cgroup(paths))
    data = manager.stats()
    pids = manager.pids()
    data["spec"] = spec_limits(manager)
    data["oom_kills"] = _oom_kills(manager)
    data["pids"] = pids
    data["threads"] = _threads(pids)
    data["paths"] = paths
    return data


def container_metrics(container_id: str, labels: tuple[str, str, str], data: dict,
                      started_at: int) -> Any:
    """ContainerMetrics of one running container from its `sample()`."""
    data = dict(data, started_at=started_at)
    out = pb.ContainerMetrics(container_id=container_id)
    for d in CONTAINER_METRICS:
        assert d.value is not None
        for extra, value in d.value(data):
            out.metrics.append(pb.Metric(name=d.name, timestamp=0, metric_type=d.kind,
                                         label_values=list(labels + extra),
                                         value=pb.UInt64Value(value=value)))
    return out


def network_metrics(pid: int, labels: tuple[str, str, str]) -> list[Any]:
    """The pod's network counters per interface (loopback left out) from
    /proc/<infra pid>/net/dev."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return []
    out = []
    for line in lines:
        name, _, rest = line.partition(":")
        name, fields = name.strip(), rest.split()
        if name == "lo" or len(fields) < 16:
            continue
        for (metric, _, column), d in zip(_NET_COLUMNS, POD_METRICS, strict=True):
            out.append(pb.Metric(name=metric, timestamp=0, metric_type=d.kind,
                                 label_values=list(labels + (name,)),
                                 value=pb.UInt64Value(value=_int(fields[column]))))
    return out
