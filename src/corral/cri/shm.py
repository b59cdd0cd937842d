"""The pod's /dev/shm: a tmpfs mounted on the host in the infra container's bundle and
bound at /dev/shm into the infra and every container sharing the pod's IPC namespace,
so POSIX shared memory is shared along with SysV IPC (containerd does the same with
the sandbox's shm). A pod on the node's IPC namespace uses the host's /dev/shm.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SIZE = 64 << 20  # docker's and containerd's default shm size


def path(bundle: Path) -> Path:
    return Path(bundle) / "shm"


def mount(bundle: Path) -> Path:
    """Mount the pod's shm tmpfs (idempotent); returns its path."""
    from corral.linux import syscalls as sc

    target = path(bundle)
    target.mkdir(mode=0o755, exist_ok=True)
    if not os.path.ismount(target):
        sc.mount("shm", str(target), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
                 f"mode=1777,size={SIZE}")
    return target


def unmount(bundle: Path) -> None:
    """Unmount it (lazily: a container may still hold it); no error if not mounted."""
    from corral.linux import syscalls as sc

    target = path(bundle)
    with contextlib.suppress(OSError):
        while os.path.ismount(target):
            sc.umount(str(target), sc.MNT_DETACH)


def bind(spec: dict, source: Path | str) -> None:
    """Replace the spec's /dev/shm mount with a bind of `source`."""
    entry = {"destination": "/dev/shm", "type": "bind", "source": str(source),
             "options": ["rbind", "nosuid", "nodev", "noexec", "rw"]}
    mounts = spec.setdefault("mounts", [])
    for m in mounts:
        if m.get("destination") == "/dev/shm":
            m.clear()
            m.update(entry)
            return
    mounts.append(entry)
