"""Block I/O (config-linux.md#block-io): v1 blkio, v2 io.

v1: blkio.weight/leaf_weight/weight_device (CFQ) or blkio.bfq.weight(_device) (BFQ),
blkio.throttle.{read,write}_{bps,iops}_device. v2: io.bfq.weight when BFQ is there
(same 10..1000 scale), else io.weight converted with runc's formula; io.max
"MAJ:MIN rbps=.. wbps=.. riops=.. wiops=..". leafWeight has no v2 equivalent.
"""

from __future__ import annotations

from corral.errors import Unavailable
from corral.linux.cgroups.common import exists, read, warn, write

CONTROLLER_V1 = "blkio"
CONTROLLER_V2 = "io"
_THROTTLE = (("throttleReadBpsDevice", "read_bps_device", "rbps"),
             ("throttleWriteBpsDevice", "write_bps_device", "wbps"),
             ("throttleReadIOPSDevice", "read_iops_device", "riops"),
             ("throttleWriteIOPSDevice", "write_iops_device", "wiops"))


def needed(resources: dict) -> bool:
    block_io = resources.get("blockIO") or {}
    return any(block_io.get(k) for k in ("weight", "leafWeight", "weightDevice",
                                         *(t[0] for t in _THROTTLE)))


def weight_to_io_weight(weight: int) -> int:
    """runc's ConvertBlkIOToIOWeightValue: [10, 1000] onto [1, 10000]; 0 = unset."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def set_v1(path: str, resources: dict) -> None:
    block_io = resources.get("blockIO") or {}
    bfq = not exists(path, "blkio.weight") and exists(path, "blkio.bfq.weight")
    weight_file = "blkio.bfq.weight" if bfq else "blkio.weight"
    if block_io.get("weight"):
        if not exists(path, weight_file):
            raise Unavailable("linux.resources.blockIO.weight: the host's I/O scheduler has no "
                              "weights (no blkio.weight or blkio.bfq.weight)")
        write(path, weight_file, block_io["weight"], "blockIO.weight")
    if block_io.get("leafWeight"):
        if not exists(path, "blkio.leaf_weight"):
            raise Unavailable("linux.resources.blockIO.leafWeight: the kernel has no "
                              "blkio.leaf_weight")
        write(path, "blkio.leaf_weight", block_io["leafWeight"], "blockIO.leafWeight")
    for index, entry in enumerate(block_io.get("weightDevice") or []):
        device = f"{entry['major']}:{entry['minor']}"
        field = f"blockIO.weightDevice[{index}]"
        if entry.get("weight") is not None:
            name = "blkio.bfq.weight_device" if bfq else "blkio.weight_device"
            if not exists(path, name):
                raise Unavailable(f"linux.resources.{field}: the kernel has no {name}")
            write(path, name, f"{device} {entry['weight']}", field)
        if entry.get("leafWeight") is not None:
            write(path, "blkio.leaf_weight_device", f"{device} {entry['leafWeight']}", field)
    for key, suffix, _ in _THROTTLE:
        for index, entry in enumerate(block_io.get(key) or []):
            write(path, f"blkio.throttle.{suffix}", f"{entry['major']}:{entry['minor']} "
                  f"{entry['rate']}", f"blockIO.{key}[{index}]")


def set_v2(path: str, resources: dict) -> None:
    block_io = resources.get("blockIO") or {}
    bfq = exists(path, "io.bfq.weight")
    if block_io.get("weight"):
        if bfq:
            write(path, "io.bfq.weight", block_io["weight"], "blockIO.weight")
        else:
            write(path, "io.weight", weight_to_io_weight(block_io["weight"]), "blockIO.weight")
    if block_io.get("leafWeight"):
        warn("linux.resources.blockIO.leafWeight is ignored on cgroup v2")
    for index, entry in enumerate(block_io.get("weightDevice") or []):
        if entry.get("weight") is not None:
            device = f"{entry['major']}:{entry['minor']}"
            if bfq:
                write(path, "io.bfq.weight", f"{device} {entry['weight']}",
                      f"blockIO.weightDevice[{index}]")
            else:
                write(path, "io.weight", f"{device} {weight_to_io_weight(entry['weight'])}",
                      f"blockIO.weightDevice[{index}]")
    for key, _, name in _THROTTLE:
        for index, entry in enumerate(block_io.get(key) or []):
            rate = entry["rate"] or "max"
            write(path, "io.max", f"{entry['major']}:{entry['minor']} {name}={rate}",
                  f"blockIO.{key}[{index}]")


def _v1_entries(path: str, name: str) -> list[dict]:
    entries = []
    for line in (read(path, name) or "").splitlines():
        fields = line.split()
        if len(fields) == 3 and ":" in fields[0]:
            major, minor = fields[0].split(":")
            entries.append({"major": int(major), "minor": int(minor), "op": fields[1],
                            "value": int(fields[2])})
    return entries


def stats_v1(path: str) -> dict:
    result = {}
    for key, name in (("ioServiceBytesRecursive", "blkio.io_service_bytes_recursive"),
                      ("ioServicedRecursive", "blkio.io_serviced_recursive")):
        entries = _v1_entries(path, name)
        if not entries:
            entries = _v1_entries(path, name.replace("blkio.", "blkio.throttle."))
        if entries:
            result[key] = entries
    return result


def stats_v2(path: str) -> dict:
    service_bytes, serviced = [], []
    for line in (read(path, "io.stat") or "").splitlines():
        fields = line.split()
        if not fields or ":" not in fields[0]:
            continue
        major, minor = (int(x) for x in fields[0].split(":"))
        values = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        for op, key, target in (("Read", "rbytes", service_bytes),
                                ("Write", "wbytes", service_bytes),
                                ("Read", "rios", serviced), ("Write", "wios", serviced)):
            if key in values:
                target.append({"major": major, "minor": minor, "op": op,
                               "value": int(values[key])})
    result = {}
    if service_bytes:
        result["ioServiceBytesRecursive"] = service_bytes
    if serviced:
        result["ioServicedRecursive"] = serviced
    return result
