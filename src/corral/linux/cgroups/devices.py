"""Device access (config-linux.md#allowed-device-list).

v1: devices.deny/devices.allow lines, in order, then runc's default allowed devices
and every device in linux.devices. v2 has no devices files: the same rule list is
compiled to an eBPF program (`corral.linux.cgroups.ebpf`) attached to the cgroup.
"""

from __future__ import annotations

from corral.linux.cgroups.common import write

# Devices every container may use whatever its rules say (runc's AllowedDevices).
DEFAULT_ALLOWED = (
    {"type": "c", "major": -1, "minor": -1, "access": "m", "allow": True},
    {"type": "b", "major": -1, "minor": -1, "access": "m", "allow": True},
    {"type": "c", "major": 1, "minor": 3, "access": "rwm", "allow": True},   # null
    {"type": "c", "major": 1, "minor": 8, "access": "rwm", "allow": True},   # random
    {"type": "c", "major": 1, "minor": 7, "access": "rwm", "allow": True},   # full
    {"type": "c", "major": 5, "minor": 0, "access": "rwm", "allow": True},   # tty
    {"type": "c", "major": 1, "minor": 5, "access": "rwm", "allow": True},   # zero
    {"type": "c", "major": 1, "minor": 9, "access": "rwm", "allow": True},   # urandom
    {"type": "c", "major": 5, "minor": 1, "access": "rwm", "allow": True},   # console
    {"type": "c", "major": 136, "minor": -1, "access": "rwm", "allow": True},  # pts
    {"type": "c", "major": 5, "minor": 2, "access": "rwm", "allow": True},   # ptmx
    {"type": "c", "major": 10, "minor": 200, "access": "rwm", "allow": True},  # tun
)


def needed(resources: dict) -> bool:
    return bool(resources.get("devices"))


def effective_rules(resources: dict, devices: list[dict] | None) -> list[dict]:
    """The container's rules, then the defaults, then linux.devices (last match wins)."""
    rules = [dict(r) for r in resources.get("devices") or []]
    rules.extend(DEFAULT_ALLOWED)
    for device in devices or []:
        if device.get("type") in ("c", "b", "u"):
            rules.append({"type": "c" if device["type"] == "u" else device["type"],
                          "major": device["major"], "minor": device["minor"],
                          "access": "rwm", "allow": True})
    return rules


def v1_line(rule: dict) -> str:
    kind = rule.get("type") or "a"
    major = "*" if rule.get("major") in (None, -1) else rule["major"]
    minor = "*" if rule.get("minor") in (None, -1) else rule["minor"]
    access = rule.get("access") or "rwm"
    if kind == "a" and major == "*" and minor == "*" and set(access) == set("rwm"):
        return "a"
    return f"{kind} {major}:{minor} {access}"


def set_v1(path: str, resources: dict, devices: list[dict] | None) -> None:
    for index, rule in enumerate(effective_rules(resources, devices)):
        field = f"devices[{index}]" if index < len(resources.get("devices") or []) \
            else "devices (default allowed devices)"
        write(path, "devices.allow" if rule.get("allow") else "devices.deny", v1_line(rule),
              field)


def set_v2(path: str, resources: dict, devices: list[dict] | None) -> None:
    from corral.linux.cgroups import ebpf

    ebpf.attach_device_filter(path, effective_rules(resources, devices))
