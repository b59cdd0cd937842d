"""CRI stats: ContainerStats / PodSandboxStats from the OCI runtime's `events --stats`
(runc's JSON: the cgroup's cpu, memory, pids), the writable layer from the store's RW
directory, the pod's network from the infra process's /proc/<pid>/net/dev.

`usage_nano_cores` needs two samples: the last one of each container is kept (as
containerd does) and the rate computed against it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from corral.cri._gen import api_pb2 as pb

_last: dict[str, tuple[int, int]] = {}  # container id -> (timestamp ns, cpu usage ns)
_last_lock = threading.Lock()


def sample(engine: Any, c: Any) -> dict:
    """The runtime's stats of a running container ({} when it is not running)."""
    if c is None or c.status not in ("running", "paused"):
        return {}
    return engine._runtime(c).stats(c.id, timeout=10) or {}


def _u64(value: Any) -> Any:
    return pb.UInt64Value(value=max(0, int(value or 0)))


def cpu_usage(container_id: str, data: dict, now: int) -> Any:
    total = int(((data.get("cpu") or {}).get("usage") or {}).get("total") or 0)
    usage = pb.CpuUsage(timestamp=now, usage_core_nano_seconds=_u64(total))
    with _last_lock:
        previous = _last.get(container_id)
        _last[container_id] = (now, total)
    if previous is not None and now > previous[0] and total >= previous[1]:
        usage.usage_nano_cores.value = int((total - previous[1]) * 1e9 / (now - previous[0]))
    return usage


def memory_usage(data: dict, now: int) -> Any:
    memory = data.get("memory") or {}
    raw = memory.get("stats") or memory.get("raw") or {}
    usage = int((memory.get("usage") or {}).get("usage") or 0)
    limit = int((memory.get("usage") or {}).get("limit") or 0)
    inactive = int(raw.get("total_inactive_file", raw.get("inactive_file", 0)) or 0)
    working = max(0, usage - inactive)
    rss = raw.get("total_rss", raw.get("rss", raw.get("anon", 0)))
    out = pb.MemoryUsage(timestamp=now, working_set_bytes=_u64(working),
                         usage_bytes=_u64(usage), rss_bytes=_u64(rss),
                         page_faults=_u64(raw.get("total_pgfault", raw.get("pgfault", 0))),
                         major_page_faults=_u64(raw.get("total_pgmajfault",
                                                        raw.get("pgmajfault", 0))))
    if 0 < limit < (1 << 62):
        out.available_bytes.value = max(0, limit - working)
    return out


def container_stats(engine: Any, record: dict, config: Any, c: Any) -> Any:
    """ContainerStats of one CRI container (attributes, cpu, memory, swap)."""
    now = time.time_ns()
    data = sample(engine, c)
    stats = pb.ContainerStats(attributes=pb.ContainerAttributes(
        id=record["id"], metadata=config.metadata, labels=config.labels,
        annotations=config.annotations))
    if data:
        stats.cpu.CopyFrom(cpu_usage(record["id"], data, now))
        stats.memory.CopyFrom(memory_usage(data, now))
        swap = int(((data.get("memory") or {}).get("swap") or {}).get("usage") or 0)
        usage = int(((data.get("memory") or {}).get("usage") or {}).get("usage") or 0)
        stats.swap.CopyFrom(pb.SwapUsage(timestamp=now,
                                         swap_usage_bytes=_u64(max(0, swap - usage))))
    if c is not None:
        try:
            stats.writable_layer.CopyFrom(writable_layer(engine, record["id"], now))
        except (OSError, ValueError):
            pass
    return stats, data


def writable_layer(engine: Any, container_id: str, now: int) -> Any:
    """FilesystemUsage of the container's writable layer: disk blocks and inodes under
    the driver's RW directory (overlay: `upper`; vfs: the whole copy), hard links
    counted once, as containerd's snapshotters measure it."""
    store = engine.store
    rw = Path(store.containers.rw_dir(container_id))
    top = rw / "upper" if (rw / "upper").is_dir() else rw / "root"
    used = inodes = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            used += st.st_blocks * 512
            inodes += 1
    return pb.FilesystemUsage(timestamp=now, fs_id=pb.FilesystemIdentifier(
        mountpoint=str(store.root)), used_bytes=_u64(used), inodes_used=_u64(inodes))


def network_usage(pid: int | None, now: int) -> Any:
    """NetworkUsage from /proc/<pid>/net/dev (eth0 the default interface)."""
    usage = pb.NetworkUsage(timestamp=now)
    if not pid:
        return usage
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return usage
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if name == "lo" or len(fields) < 16:
            continue
        iface = pb.NetworkInterfaceUsage(name=name, rx_bytes=_u64(fields[0]),
                                         rx_errors=_u64(fields[2]), tx_bytes=_u64(fields[8]),
                                         tx_errors=_u64(fields[10]))
        usage.interfaces.append(iface)
        if name == "eth0":
            usage.default_interface.CopyFrom(iface)
    return usage


def forget(container_id: str) -> None:
    with _last_lock:
        _last.pop(container_id, None)
