"""pids controller (config-linux.md#pids): pids.max, on v1 and v2 alike.
-1 is unlimited ("max"); 0 is a real limit, as the spec says."""

from __future__ import annotations

from corral.linux.cgroups.common import max_or, read, read_int, write

CONTROLLER = "pids"


def needed(resources: dict) -> bool:
    return (resources.get("pids") or {}).get("limit") is not None


def set_any(path: str, resources: dict) -> None:
    limit = (resources.get("pids") or {}).get("limit")
    if limit is not None:
        write(path, "pids.max", max_or(limit), "pids.limit")


def stats(path: str) -> dict:
    limit = (read(path, "pids.max") or "max").strip()
    return {"current": read_int(path, "pids.current"),
            "limit": 0 if limit == "max" else int(limit)}
