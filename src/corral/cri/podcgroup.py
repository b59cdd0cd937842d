"""The pod cgroup: the directory (one per hierarchy) every container of a pod lives
under, `<parent>/corral-<id>` (cgroupfs driver), and the pod-level limits written to it.

Its path is `LinuxPodSandboxConfig.cgroup_parent` when kubelet gives one (kubelet made
it and sized it already; the server writes the same pod-level limits, so the pod is
bounded also when kubelet's QoS cgroups are off) or, when the pod has resources or
overhead but no parent, one of the server's own: `/corral-pods/pod-<key>`, the key a
random one chosen before the infra container is made (its config names the path: the
engine's `cgroup_parent`), kept in the sandbox record.

The limits (`translate.pod_resources`: resources + overhead) are written through the
linux layer's cgroup managers (v1, v2 or hybrid, detected), which also create the
directories (copying cpuset.cpus/mems down on v1, enabling controllers on v2). A
directory the server made is removed with the pod; kubelet's are left to kubelet.
"""

from __future__ import annotations

import contextlib
import os

OWN_PARENT = "/corral-pods"


def check_root(root: str) -> str:
    """`cri serve --pod-cgroup-root`: an absolute cgroup path, no `..`, no odd names."""
    from corral.errors import InvalidArgument

    parts = root.split("/")
    if not root.startswith("/") or root == "/" or any(
            p in (".", "..") or not all(c.isalnum() or c in "-_." for c in p)
            for p in parts[1:]):
        raise InvalidArgument(f"--pod-cgroup-root {root!r}: expected an absolute cgroup "
                              "path of letters, digits, '-', '_' and '.'")
    return root.rstrip("/")


def own_path(root: str = OWN_PARENT, key: str | None = None) -> str:
    """A pod cgroup of the server's own under `root` (`key`: a fresh random one)."""
    if key is None:
        key = os.urandom(16).hex()
    return f"{root}/pod-{key}"


def _cgroup(path: str):
    from corral.linux.cgroups import Cgroup

    return Cgroup.for_config(path, "")


def exists(path: str) -> bool:
    return any(os.path.isdir(p) for p in _cgroup(path).paths.values())


def apply(path: str, resources: dict) -> bool:
    """Make the pod cgroup `path` (absolute) if needed and write `resources` to it;
    True when it did not exist before (the server then owns it)."""
    from corral.linux.cgroups import manager_for

    cgroup = _cgroup(path)
    made = not any(os.path.isdir(p) for p in cgroup.paths.values())
    if resources:
        manager_for(cgroup).check(resources)
    cgroup.create(resources)
    if resources:
        manager_for(cgroup).apply(resources)
    return made


def remove(path: str) -> None:
    """rmdir the pod cgroup in every hierarchy (its containers' are gone by then); a
    directory still in use (another pod given the same parent) stays. The server's
    own `/corral-pods` stays too (as kubelet's /kubepods): removing it could race a
    pod being made beneath it."""
    for directory in _cgroup(path).paths.values():
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def read_limits(path: str) -> dict:
    """{memory_limit, cpu_quota, cpu_period, cpu_shares} in force in the pod cgroup."""
    from corral.cri.metrics import spec_limits
    from corral.linux.cgroups import manager_for

    return spec_limits(manager_for(_cgroup(path)))
