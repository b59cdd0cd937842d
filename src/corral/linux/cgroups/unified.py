"""`unified` (config-linux.md#unified): cgroup v2 files written verbatim.

Keys are file names in the container's own v2 directory; `validate` refuses
separators and dot-dot before anything is created, and the write goes through
an O_NOFOLLOW open of a name in that directory only. The controller a key
belongs to must be enabled for the cgroup (the spec's "MUST generate an error").
"""

from __future__ import annotations

import os

from corral.errors import Unavailable
from corral.linux.cgroups.common import ControllerMissing, read
from corral.linux.cgroups.validate import validate_unified_key

# Files of the cgroup core, present whatever controllers are enabled.
_CORE = ("cgroup",)


def check(path_parent: str, resources: dict) -> None:
    """Every key's controller must be available below `path_parent` (the directory
    the container's cgroup is created in)."""
    available = (read(path_parent, "cgroup.controllers") or "").split()
    for key in resources.get("unified") or {}:
        validate_unified_key(key)
        controller = key.split(".", 1)[0]
        if controller in _CORE or controller in available or key.endswith(".pressure"):
            continue
        raise ControllerMissing(f"linux.resources.unified.{key}: the {controller} controller "
                                "is not available on this cgroup v2 hierarchy")


def set_any(path: str, resources: dict) -> None:
    for key, value in (resources.get("unified") or {}).items():
        validate_unified_key(key)
        try:
            fd = os.open(os.path.join(path, key), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise Unavailable(f"linux.resources.unified.{key}: cannot open "
                              f"{os.path.join(path, key)}: {exc.strerror}") from None
        try:
            os.write(fd, value.encode())
        except OSError as exc:
            raise Unavailable(f"linux.resources.unified.{key}: cannot write {value!r}: "
                              f"{exc.strerror}") from None
        finally:
            os.close(fd)
