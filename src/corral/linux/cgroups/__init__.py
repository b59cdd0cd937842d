"""Control groups: find the host's hierarchies, place a container, and remove it.

Hosts come in three shapes (cgroups(7)): v1 only, v2 only (unified), and hybrid
(v1 controllers plus a controller-less v2 mount at /sys/fs/cgroup/unified, as on
this project's CI). `Hierarchies.detect` reads /proc/self/mountinfo rather than
assuming. A container gets one directory per hierarchy; resource limits live in
the controllers' files and are written by the managers below.

`linux.cgroupsPath` (config-linux.md#cgroups-path): absolute paths are from the
hierarchy root; relative ones from the runtime's own cgroup (on a v2-only host from
its parent, whose controllers can be enabled for children), as runc does.

Limits, statistics, freezing and killing go through a manager (`manager_for`):
`v1.V1Manager` when the container has v1 directories (v1 and hybrid hosts),
`v2.V2Manager` when it lives in the unified hierarchy alone. Both have the shape
of `manager.Manager`; each resource has its own module (memory, cpu, cpuset, pids,
blkio, hugetlb, devices + ebpf, net, rdma, unified, freezer). `validate` checks a
configuration before anything is created.

This package is imported on the runtime's start-up path (the init joins its
cgroups): it and its submodules import only cheap standard-library modules, and
the managers are imported when first used.
"""

from __future__ import annotations

import os
import time

from corral.errors import InvalidArgument

MOUNT_ROOT = "/sys/fs/cgroup"


class Hierarchy:
    """One mounted hierarchy: v1 (`controllers` like ('cpu', 'cpuacct')) or v2."""

    __slots__ = ("controllers", "mount_point", "options", "own_path", "version")

    def __init__(self, mount_point: str, version: int, controllers: tuple[str, ...],
                 own_path: str, options: str = "") -> None:
        self.mount_point = mount_point
        self.version = version
        self.controllers = controllers
        self.own_path = own_path
        self.options = options  # the super options of mountinfo, as mounted

    @property
    def name(self) -> str:
        relative = os.path.relpath(self.mount_point, MOUNT_ROOT)
        return "unified" if relative == "." else relative


def detect() -> list[Hierarchy]:
    """Every cgroup hierarchy mounted under /sys/fs/cgroup, with this process's path."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers if number != "0" else ""] = path
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            separator = fields.index("-")
            fstype, options = fields[separator + 1], fields[separator + 3]
            point = fields[4]
            if not (point == MOUNT_ROOT or point.startswith(MOUNT_ROOT + "/")):
                continue
            if fstype == "cgroup2":
                found.append(Hierarchy(point, 2, (), own.get("", "/"), options))
            elif fstype == "cgroup":
                controllers = tuple(o for o in options.split(",")
                                    if o not in ("rw", "ro", "xattr", "noprefix")
                                    and not o.startswith("release_agent")
                                    and not o.startswith("clone_children"))
                key = ",".join(controllers)
                found.append(Hierarchy(point, 1, controllers, own.get(key, "/"), options))
    return found


# detect()'s answer read ahead by `preload` (the runtime's await path), else None.
_preloaded: list[Hierarchy] | None = None


def preload() -> list[Hierarchy]:
    """Read the hierarchies now, for this process's `Cgroup.for_config`: the runtime
    does it while it waits for config.json (corral.runtime.AWAIT_CONFIG_ENV)."""
    global _preloaded
    _preloaded = detect()
    return _preloaded


def is_unified_only(hierarchies: list[Hierarchy]) -> bool:
    return bool(hierarchies) and all(h.version == 2 for h in hierarchies)


class Cgroup:
    """A container's cgroup: one directory in each hierarchy."""

    def __init__(self, paths: dict[str, str],
                 hierarchies: list[Hierarchy] | None = None) -> None:
        self.paths = paths  # hierarchy name -> absolute directory
        self.hierarchies = hierarchies  # the host's, when known (for_config)

    @classmethod
    def for_config(cls, cgroups_path: str | None, container_id: str,
                   hierarchies: list[Hierarchy] | None = None) -> Cgroup:
        relative = cgroups_path or container_id
        if ":" in relative and not relative.startswith("/"):
            # systemd's "slice:prefix:name" form; without systemd, use it as a path.
            slice_name, prefix, name = (relative.split(":") + ["", ""])[:3]
            relative = os.path.join(slice_name, f"{prefix}-{name}.scope" if prefix else name)
        if ".." in relative.split("/"):
            raise InvalidArgument(f"linux.cgroupsPath: {cgroups_path!r} must not contain '..'")
        paths = {}
        if hierarchies is None:
            hierarchies = _preloaded if _preloaded is not None else detect()
        unified_only = is_unified_only(hierarchies)
        for hierarchy in hierarchies:
            base = "/" if relative.startswith("/") else hierarchy.own_path
            if unified_only and base != "/":
                # runc's fs2 default path: the runtime's own cgroup holds processes, so
                # no controller could be enabled for a child of it; use its parent
                base = os.path.dirname(base)
            inner = os.path.normpath(os.path.join(base, relative.lstrip("/")))
            paths[hierarchy.name] = hierarchy.mount_point + inner.rstrip("/")
        return cls(paths, hierarchies)

    def create(self, resources: dict | None = None) -> None:
        if set(self.paths) == {"unified"}:
            from corral.linux.cgroups.v2 import V2Manager

            V2Manager(self).create(resources)
            return
        for name, path in self.paths.items():
            try:  # the parent usually exists: one mkdir (makedirs stats first)
                os.mkdir(path)
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(path, exist_ok=True)
            if "cpuset" in name.split(","):
                inherit_cpuset(path)

    def join_self_v1(self) -> list[str]:
        """Move the calling single-threaded process into every v1 hierarchy by writing
        "0" to `tasks`; returns the hierarchies (v2) still to be joined.

        The kernel skips the global cgroup_threadgroup_rwsem for a thread moving
        itself through `tasks`; through cgroup.procs every migration waits for an RCU
        grace period (5-15 ms measured here) before it can take that lock.
        """
        remaining = []
        for name, path in self.paths.items():
            if name == "unified":
                remaining.append(name)
                continue
            try:  # os-level: open()'s text layer costed a third of the time here
                fd = os.open(path + "/tasks", os.O_WRONLY | os.O_CLOEXEC)
            except OSError:  # none (a v2 directory), or not allowed
                remaining.append(name)
                continue
            try:
                os.write(fd, b"0")
            except OSError:
                remaining.append(name)
            finally:
                os.close(fd)
        return remaining

    def add(self, pid: int, names: list[str] | None = None) -> None:
        for name, path in self.paths.items():
            if names is not None and name not in names:
                continue
            try:
                with open(os.path.join(path, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError as exc:
                raise OSError(exc.errno, f"cgroup {name}: cannot add pid {pid} to {path}: "
                              f"{exc.strerror}") from None

    def pids(self) -> list[int]:
        """Every process in the container's cgroup (and its sub-cgroups)."""
        found: set[int] = set()
        for path in self.paths.values():
            for directory, _, files in os.walk(path):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(directory, "cgroup.procs")) as f:
                            found.update(int(line) for line in f if line.strip())
                    except OSError:
                        continue
            if found:
                break
        return sorted(found)

    def destroy(self, timeout: float = 5.0) -> None:
        """rmdir every directory, deepest first; retry while dying tasks leave."""
        deadline = time.monotonic() + timeout
        for path in self.paths.values():
            if not os.path.isdir(path):
                continue
            directories = [d for d, _, _ in os.walk(path)]
            for directory in reversed(directories):
                while True:
                    try:
                        os.rmdir(directory)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        if exc.errno != 16 or time.monotonic() > deadline:  # EBUSY
                            break
                        time.sleep(0.005)

    def freezer_state_file(self) -> str | None:
        from corral.linux.cgroups.freezer import state_file

        return state_file(self.paths)


def manager_for(cgroup: Cgroup):
    """The manager for a container's cgroup: v2 when it lives in the unified
    hierarchy only, v1 otherwise (v1 and hybrid hosts)."""
    if set(cgroup.paths) == {"unified"}:
        from corral.linux.cgroups.v2 import V2Manager

        return V2Manager(cgroup)
    from corral.linux.cgroups.v1 import V1Manager

    return V1Manager(cgroup)


def check_resources(cgroup: Cgroup, resources: dict | None) -> None:
    """Validate `linux.resources` and check the host has what they need, before the
    cgroup (or anything else) is created. Errors name the field."""
    if not resources:
        return
    from corral.linux.cgroups.validate import validate

    validate(resources)
    manager_for(cgroup).check(resources)


def inherit_cpuset(path: str) -> None:
    """A new v1 cpuset cgroup starts with no cpus and mems, and no task may join it:
    copy both down from the nearest ancestor that has them."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        chain = []
        current = path
        value = ""
        while current.startswith(MOUNT_ROOT):
            try:
                with open(os.path.join(current, name)) as f:
                    value = f.read().strip()
            except OSError:
                break
            if value:
                break
            chain.append(current)
            current = os.path.dirname(current)
        for directory in reversed(chain):
            with open(os.path.join(directory, name), "w") as f:
                f.write(value)
