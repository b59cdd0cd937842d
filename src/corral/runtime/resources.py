"""`linux.resources` written to cgroup files (config-linux.md#control-groups).

Covers what every caller sets (podman sets pids and devices on every run):
memory, cpu, cpuset, pids and the v1 devices list, on v1 and v2 hierarchies.
A limit for a controller the host has not mounted is an error naming it.
"""

from __future__ import annotations

import os

from corral.errors import Unavailable
from corral.linux.cgroups import Cgroup


def _write(directory: str, name: str, value: object, field: str) -> None:
    path = os.path.join(directory, name)
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as exc:
        raise Unavailable(f"linux.resources.{field}: cannot write {value!r} to {path}: "
                          f"{exc.strerror}") from None


def _v1(cgroup: Cgroup, controller: str) -> str | None:
    for name, path in cgroup.paths.items():
        if controller in name.split(","):
            return path
    return None


def _v2(cgroup: Cgroup, controller: str) -> str | None:
    path = cgroup.paths.get("unified")
    if path is None:
        return None
    try:
        with open(os.path.join(path, "cgroup.controllers")) as f:
            available = f.read().split()
    except OSError:
        return None
    return path if controller in available else None


def _directory(cgroup: Cgroup, controller: str, field: str) -> tuple[str, int]:
    path = _v1(cgroup, controller)
    if path is not None:
        return path, 1
    path = _v2(cgroup, controller)
    if path is not None:
        return path, 2
    raise Unavailable(f"linux.resources.{field}: the host has no {controller} cgroup controller")


# Devices every container may use whatever its rules say (runc's AllowedDevices).
DEFAULT_ALLOWED_DEVICES = (
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
)


def apply(cgroup: Cgroup, resources: dict, devices: list[dict] | None = None) -> None:
    memory = resources.get("memory") or {}
    if any(memory.get(k) is not None for k in ("limit", "reservation", "swap", "swappiness")):
        path, version = _directory(cgroup, "memory", "memory")
        if version == 1:
            if memory.get("limit") is not None:
                _write(path, "memory.limit_in_bytes", memory["limit"], "memory.limit")
            if memory.get("swap") is not None and os.path.exists(
                    os.path.join(path, "memory.memsw.limit_in_bytes")):
                _write(path, "memory.memsw.limit_in_bytes", memory["swap"], "memory.swap")
            if memory.get("reservation") is not None:
                _write(path, "memory.soft_limit_in_bytes", memory["reservation"],
                       "memory.reservation")
            if memory.get("swappiness") is not None and memory["swappiness"] <= 100:
                _write(path, "memory.swappiness", memory["swappiness"], "memory.swappiness")
        else:
            if memory.get("limit") is not None:
                _write(path, "memory.max", _max(memory["limit"]), "memory.limit")
            if memory.get("reservation") is not None:
                _write(path, "memory.low", _max(memory["reservation"]), "memory.reservation")
            if memory.get("swap") is not None and memory.get("limit") is not None:
                swap = memory["swap"] - memory["limit"] if memory["swap"] > 0 else memory["swap"]
                _write(path, "memory.swap.max", _max(swap), "memory.swap")
    pids = resources.get("pids") or {}
    if pids.get("limit") is not None:
        path, _ = _directory(cgroup, "pids", "pids")
        _write(path, "pids.max", _max(pids["limit"]), "pids.limit")
    cpu = resources.get("cpu") or {}
    if cpu.get("shares") or cpu.get("quota") or cpu.get("period"):
        path, version = _directory(cgroup, "cpu", "cpu")
        if version == 1:
            if cpu.get("shares"):
                _write(path, "cpu.shares", cpu["shares"], "cpu.shares")
            if cpu.get("period"):
                _write(path, "cpu.cfs_period_us", cpu["period"], "cpu.period")
            if cpu.get("quota"):
                _write(path, "cpu.cfs_quota_us", cpu["quota"], "cpu.quota")
        else:
            if cpu.get("shares"):
                weight = 1 + ((cpu["shares"] - 2) * 9999) // 262142
                _write(path, "cpu.weight", weight, "cpu.shares")
            if cpu.get("quota") or cpu.get("period"):
                quota = cpu.get("quota") or -1
                _write(path, "cpu.max", f"{_max(quota)} {cpu.get('period') or 100000}",
                       "cpu.quota")
    if cpu.get("cpus") or cpu.get("mems"):
        path, _ = _directory(cgroup, "cpuset", "cpu.cpus")
        if cpu.get("cpus"):
            _write(path, "cpuset.cpus", cpu["cpus"], "cpu.cpus")
        if cpu.get("mems"):
            _write(path, "cpuset.mems", cpu["mems"], "cpu.mems")
    rules = resources.get("devices")
    if rules:
        path = _v1(cgroup, "devices")
        if path is not None:
            _apply_device_rules(path, rules)
            for line in DEFAULT_ALLOWED_DEVICES:
                _write(path, "devices.allow", line, "devices")
            for device in devices or []:
                if device.get("type") in ("c", "b", "u"):
                    kind = "c" if device["type"] == "u" else device["type"]
                    _write(path, "devices.allow",
                           f"{kind} {device['major']}:{device['minor']} rwm", "devices")


def _max(value: int) -> str:
    return "max" if value is None or value < 0 else str(value)


def _apply_device_rules(path: str, rules: list[dict]) -> None:
    """v1 devices controller: devices.allow / devices.deny lines, in order."""
    for index, rule in enumerate(rules):
        kind = rule.get("type") or "a"
        major = "*" if rule.get("major") in (None, -1) else rule["major"]
        minor = "*" if rule.get("minor") in (None, -1) else rule["minor"]
        access = rule.get("access") or "rwm"
        line = "a" if kind == "a" and major == "*" and minor == "*" else \
            f"{kind} {major}:{minor} {access}"
        _write(path, "devices.allow" if rule.get("allow") else "devices.deny", line,
               f"devices[{index}]")
