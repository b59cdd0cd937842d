"""Validation of `linux.resources` (config-linux.md#control-groups) before anything is
created: types, ranges, device numbers and `unified` keys. Every error names the
field (`linux.resources.memory.swap: ...`), so a bad config fails cleanly and
leaves no cgroup or state directory behind.

Host facts (online CPUs and memory nodes, hugepage sizes, block devices) come from
sysfs through `Host`; unit tests pass their own.
"""

from __future__ import annotations

import os

from corral.errors import InvalidArgument

U64 = 2**64 - 1
U32 = 2**32 - 1
_UNITS = {"KB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3, "PB": 1024**4}  # in KiB


class Host:
    """What the validator checks against; every method reads sysfs lazily."""

    def cpus(self) -> set[int] | None:
        return _sys_list("/sys/devices/system/cpu/online")

    def mems(self) -> set[int] | None:
        return _sys_list("/sys/devices/system/node/online") or {0}

    def hugepage_sizes_kb(self) -> set[int] | None:
        try:
            names = os.listdir("/sys/kernel/mm/hugepages")
        except OSError:
            return set()
        return {int(n[len("hugepages-"):-2]) for n in names if n.endswith("kB")}

    def block_device(self, major: int, minor: int) -> bool:
        return os.path.exists(f"/sys/dev/block/{major}:{minor}")


def _sys_list(path: str) -> set[int] | None:
    from corral.linux.cgroups.common import parse_list

    try:
        with open(path) as f:
            return set(parse_list(f.read()))
    except (OSError, ValueError):
        return None


def _fail(field: str, message: str) -> None:
    raise InvalidArgument(f"linux.resources.{field}: {message}")


def _int(section: dict, key: str, field: str, low: int, high: int = 2**63 - 1) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"{field}.{key}", f"{value!r} is not an integer")
    if not low <= value <= high:
        _fail(f"{field}.{key}", f"{value} is out of range [{low}, {high}]")
    return value


def _bool(section: dict, key: str, field: str) -> None:
    value = section.get(key)
    if value is not None and not isinstance(value, bool):
        _fail(f"{field}.{key}", f"{value!r} is not a boolean")


def _object(resources: dict, key: str) -> dict:
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(key, f"expected an object, got {type(value).__name__}")
    return value


def _array(section: dict, key: str, field: str) -> list:
    value = section.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(f"{field}.{key}", f"expected an array, got {type(value).__name__}")
    return value


def page_size_kb(text: str) -> int | None:
    """`2MB` -> 2048 (KiB); None unless digits followed by KB/MB/GB/TB/PB.
    (Plain string checks: `re` would cost every create several ms of import.)"""
    text = text or ""
    number, unit = text[:-2], text[-2:]
    if unit not in _UNITS or not number.isascii() or not number.isdigit():
        return None
    return int(number) * _UNITS[unit]


def _is_id_list(text: str) -> bool:
    """`0-3,7`: comma-separated numbers or ranges (cpuset's list format)."""
    for part in text.split(","):
        low, _, high = part.partition("-")
        if not (low.isascii() and low.isdigit()) or "-" in part and not (
                high.isascii() and high.isdigit()):
            return False
    return True


def validate(resources: dict, host: Host | None = None) -> None:
    """Raise InvalidArgument naming the first bad field."""
    if resources is None:
        return
    if not isinstance(resources, dict):
        raise InvalidArgument("linux.resources: expected an object")
    host = host or Host()
    _memory(_object(resources, "memory"))
    _cpu(_object(resources, "cpu"), host)
    pids = _object(resources, "pids")
    _int(pids, "limit", "pids", -1)
    _block_io(_object(resources, "blockIO"), host)
    _hugepages(resources, host)
    network = _object(resources, "network")
    _int(network, "classID", "network", 0, U32)
    for index, entry in enumerate(_array(network, "priorities", "network")):
        field = f"network.priorities[{index}]"
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or set(name) & set("/ \n"):
            _fail(field, f"invalid interface name {name!r}")
        _int(entry, "priority", field, 0, U32)
    for name, limit in _object(resources, "rdma").items():
        field = f"rdma.{name}"
        if not name or set(name) & set("/ \n=") or not isinstance(limit, dict):
            _fail(field, "expected a device name mapping to {hcaHandles, hcaObjects}")
        _int(limit, "hcaHandles", field, 0, U32)
        _int(limit, "hcaObjects", field, 0, U32)
    for key, value in _object(resources, "unified").items():
        validate_unified_key(key)
        if not isinstance(value, str):
            _fail(f"unified.{key}", f"{value!r} is not a string")
    for index, rule in enumerate(resources.get("devices") or []):
        _device_rule(rule, f"devices[{index}]")


def validate_unified_key(key: str) -> None:
    """A `unified` key is a file name in the container's own cgroup directory: no
    path separators, no dot-dot, and the "controller.file" shape."""
    if (not key or "/" in key or "\0" in key or key in (".", "..") or ".." in key
            or "." not in key.strip(".")):
        _fail(f"unified.{key}", "must be a file name like 'memory.high' (no '/' or '..')")


def _memory(memory: dict) -> None:
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        _int(memory, key, "memory", -1)
    _int(memory, "swappiness", "memory", 0, 100)
    for key in ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate"):
        _bool(memory, key, "memory")
    limit, swap = memory.get("limit"), memory.get("swap")
    if swap is not None and swap > 0 and limit is not None and limit > 0 and swap < limit:
        _fail("memory.swap", f"memory+swap limit {swap} must be >= memory.limit {limit}")


def _cpu(cpu: dict, host: Host) -> None:
    _int(cpu, "shares", "cpu", 0, U64)
    _int(cpu, "quota", "cpu", -1)
    period = _int(cpu, "period", "cpu", 0, U64)
    if period and not 1000 <= period <= 1000000:
        _fail("cpu.period", f"{period} must be between 1000 and 1000000 microseconds")
    _int(cpu, "burst", "cpu", 0, U64)
    _int(cpu, "realtimeRuntime", "cpu", -1)
    _int(cpu, "realtimePeriod", "cpu", 0, U64)
    _int(cpu, "idle", "cpu", 0, 1)
    for key, available in (("cpus", host.cpus), ("mems", host.mems)):
        text = cpu.get(key)
        if text is None or text == "":
            continue
        from corral.linux.cgroups.common import parse_list

        try:
            if not isinstance(text, str) or not _is_id_list(text.strip()):
                raise ValueError
            wanted = set(parse_list(text))
        except ValueError:
            _fail(f"cpu.{key}", f"{text!r} is not a list like '0-3,7'")
        have = available()
        if have and not wanted <= have:
            missing = sorted(wanted - have)
            _fail(f"cpu.{key}", f"{text!r} names {missing[0]}"
                                f"{' and more' if len(missing) > 1 else ''}, which the host "
                                f"does not have (online: {min(have)}-{max(have)})")


def _block_io(block_io: dict, host: Host) -> None:
    for key in ("weight", "leafWeight"):
        value = _int(block_io, key, "blockIO", 0, 1000)
        if value and value < 10:
            _fail(f"blockIO.{key}", f"{value} must be between 10 and 1000")
    for index, entry in enumerate(_array(block_io, "weightDevice", "blockIO")):
        field = f"blockIO.weightDevice[{index}]"
        _device_numbers(entry, field, host)
        if entry.get("weight") is None and entry.get("leafWeight") is None:
            _fail(field, "needs weight or leafWeight")
        for key in ("weight", "leafWeight"):
            value = _int(entry, key, field, 0, 1000)
            if value is not None and value < 10:
                _fail(f"{field}.{key}", f"{value} must be between 10 and 1000")
    for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
        for index, entry in enumerate(_array(block_io, key, "blockIO")):
            field = f"blockIO.{key}[{index}]"
            _device_numbers(entry, field, host)
            if entry.get("rate") is None:
                _fail(field, "rate is required")
            _int(entry, "rate", field, 0, U64)


def _device_numbers(entry: object, field: str, host: Host) -> None:
    if not isinstance(entry, dict):
        _fail(field, "expected an object with major and minor")
    for key in ("major", "minor"):
        if entry.get(key) is None:
            _fail(field, f"{key} is required")
        _int(entry, key, field, 0, U32)
    if not host.block_device(entry["major"], entry["minor"]):
        _fail(field, f"no block device {entry['major']}:{entry['minor']} on this host")


def _hugepages(resources: dict, host: Host) -> None:
    entries = resources.get("hugepageLimits") or []
    if not isinstance(entries, list):
        _fail("hugepageLimits", "expected an array")
    sizes = None
    for index, entry in enumerate(entries):
        field = f"hugepageLimits[{index}]"
        if not isinstance(entry, dict):
            _fail(field, "expected an object with pageSize and limit")
        size = page_size_kb(entry.get("pageSize"))
        if size is None:
            _fail(f"{field}.pageSize", f"{entry.get('pageSize')!r} is not like '2MB' or '1GB'")
        if sizes is None:
            sizes = host.hugepage_sizes_kb()
        if sizes is not None and size not in sizes:
            _fail(f"{field}.pageSize", f"{entry['pageSize']} pages are not supported by this "
                                       f"host ({sorted(sizes)} kB)")
        if entry.get("limit") is None:
            _fail(f"{field}.limit", "is required")
        _int(entry, "limit", field, 0, U64)


def _device_rule(rule: object, field: str) -> None:
    if not isinstance(rule, dict):
        _fail(field, "expected an object")
    if not isinstance(rule.get("allow"), bool):
        _fail(f"{field}.allow", "is required and must be a boolean")
    if rule.get("type", "a") not in ("a", "b", "c"):
        _fail(f"{field}.type", f"{rule.get('type')!r} is not a, b or c")
    access = rule.get("access", "rwm")
    if not isinstance(access, str) or not set(access) <= set("rwm"):
        _fail(f"{field}.access", f"{access!r} must be made of r, w and m")
    for key in ("major", "minor"):
        _int(rule, key, field, -1, U32)
