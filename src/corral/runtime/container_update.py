"""`update`: change a running container's resource limits (runc-update(8)).

The new values come from flags or from a `linux.resources`-shaped JSON (`-r FILE|-`);
they are validated, written through the container's cgroup manager (only the set
fields), then merged into the stored config, so later updates and `events --stats`
see them.
"""

from __future__ import annotations

import re

from corral.errors import FailedPrecondition, InvalidArgument, Unavailable
from corral.linux.cgroups import Cgroup, manager_for
from corral.linux.cgroups.validate import validate
from corral.runtime.state import Container

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([kmgtp])?(i?b)?$", re.IGNORECASE)
_UNIT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}

# flag key -> (section, field, parser)
FLAG_FIELDS = {
    "memory": ("memory", "limit", "bytes"),
    "memory_swap": ("memory", "swap", "bytes"),
    "memory_reservation": ("memory", "reservation", "bytes"),
    "kernel_memory": ("memory", "kernel", "bytes"),
    "kernel_memory_tcp": ("memory", "kernelTCP", "bytes"),
    "cpu_shares": ("cpu", "shares", "uint"),
    "cpu_quota": ("cpu", "quota", "int"),
    "cpu_period": ("cpu", "period", "uint"),
    "cpu_burst": ("cpu", "burst", "uint"),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", "int"),
    "cpu_rt_period": ("cpu", "realtimePeriod", "uint"),
    "cpuset_cpus": ("cpu", "cpus", "str"),
    "cpuset_mems": ("cpu", "mems", "str"),
    "pids_limit": ("pids", "limit", "int"),
    "blkio_weight": ("blockIO", "weight", "uint"),
}


def parse_bytes(text: str, flag: str) -> int:
    """docker's RAMInBytes ("20m", "1.5GiB", "512") and -1 for unlimited."""
    if text.strip() == "-1":
        return -1
    match = _SIZE.match(text.strip())
    if not match:
        raise InvalidArgument(f"invalid value for {flag}: invalid size: {text!r}")
    return int(float(match.group(1)) * _UNIT[(match.group(2) or "").lower()])


def resources_from_flags(flags: dict) -> dict:
    if flags.get("l3_cache_schema"):
        raise Unavailable("Intel RDT/CAT: l3 cache schema is not enabled")
    if flags.get("mem_bw_schema"):
        raise Unavailable("Intel RDT/MBA: memory bandwidth schema is not enabled")
    resources: dict = {}
    for key, (section, field, kind) in FLAG_FIELDS.items():
        text = flags.get(key)
        if text is None:
            continue
        flag = "--" + key.replace("_", "-")
        if kind == "bytes":
            value: object = parse_bytes(text, flag)
        elif kind == "str":
            value = text
        else:
            try:
                value = int(text)
            except ValueError:
                raise InvalidArgument(f"invalid value for {flag}: {text!r} is not a number") \
                    from None
            if kind == "uint" and value < 0:
                raise InvalidArgument(f"invalid value for {flag}: {text!r} must not be negative")
        resources.setdefault(section, {})[field] = value
    return resources


def load_resources_file(path: str) -> dict:
    from corral.oci import fastjson

    try:
        if path == "-":
            import sys

            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
        resources = fastjson.loads(data)
    except OSError as exc:
        raise InvalidArgument(f"--resources: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InvalidArgument(f"--resources: {path}: not JSON: {exc}") from None
    if not isinstance(resources, dict):
        raise InvalidArgument(f"--resources: {path}: expected a JSON object")
    # runc's -r format spells the blkio weight "blkioWeight"
    block_io = resources.get("blockIO")
    if isinstance(block_io, dict) and "blkioWeight" in block_io:
        block_io.setdefault("weight", block_io.pop("blkioWeight"))
    return _drop_unset(resources)


def _drop_unset(resources: dict) -> dict:
    """In runc's -r format a zero or empty value means "leave alone" (except where 0
    is a setting of its own: swappiness, idle)."""
    def unset(key: str, value: object) -> bool:
        if value is None or value == "" or value == [] or value == {}:
            return True
        return type(value) is int and value == 0 and key not in ("swappiness", "idle")

    result: dict = {}
    for key, value in resources.items():
        if isinstance(value, dict) and key not in ("unified", "rdma"):
            value = {k: v for k, v in value.items() if not unset(k, v)}
        if not unset(key, value):
            result[key] = value
    return result


def merge(old: dict, new: dict) -> dict:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (old or {}).items()}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def update(root: str, container_id: str, resources: dict) -> None:
    container = Container.load(root, container_id)
    status = container.status()
    if status not in ("created", "running", "paused"):
        raise FailedPrecondition(f"container {container_id!r} is {status}: cannot update it")
    validate(resources)
    config = container.data.setdefault("config", {})
    linux = config.setdefault("linux", {})
    manager = manager_for(Cgroup(container.data.get("cgroup_paths") or {}))
    manager.check(resources)
    manager.apply(resources, linux.get("devices"))
    linux["resources"] = merge(linux.get("resources") or {}, resources)
    container.save()
