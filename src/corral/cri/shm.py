"""The pod's /dev/shm: a tmpfs mounted on the host under `<store root>/cri/shm/` and
bound at /dev/shm into the infra and every container sharing the pod's IPC namespace
(an engine `--mount` of type bind: `translate.shm_mount`), so POSIX shared memory is
shared along with SysV IPC (containerd does the same with the sandbox's shm). A pod
on the node's IPC namespace uses the host's /dev/shm (the engine's `ipc=host`).

It is made before the infra container (whose config names it) and recorded in the
sandbox record (`shm`); pods of an older server have theirs in the infra's bundle
(`legacy_path`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SIZE = 64 << 20  # docker's and containerd's default shm size


def directory(root: Path) -> Path:
    return Path(root) / "cri" / "shm"


def legacy_path(bundle: Path) -> Path:
    """Where a server before the engine options mounted it: the infra's bundle."""
    return Path(bundle) / "shm"


def make(root: Path) -> Path:
    """A new pod shm: a directory under `<root>/cri/shm/` with the tmpfs mounted."""
    from corral.linux import syscalls as sc

    base = directory(root)
    base.mkdir(parents=True, exist_ok=True)
    target = base / f"pod-{secrets.token_hex(8)}"
    target.mkdir(mode=0o755)
    try:
        sc.mount("shm", str(target), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
                 f"mode=1777,size={SIZE}")
    except BaseException:
        target.rmdir()
        raise
    return target


def unmount(target: Path | str | None, *, remove: bool = True) -> None:
    """Unmount it (lazily: a container may still hold it) and, with `remove`, remove
    the directory; no error if not mounted or gone."""
    if not target:
        return
    from corral.linux import syscalls as sc

    target = Path(target)
    with contextlib.suppress(OSError):
        while os.path.ismount(target):
            sc.umount(str(target), sc.MNT_DETACH)
    if remove and target.parent.name == "shm" and target.name.startswith("pod-"):
        with contextlib.suppress(OSError):
            target.rmdir()


def orphans(root: Path, known: set[str], grace: float) -> list[Path]:
    """Pod shm directories no sandbox record names, older than `grace` seconds (a
    server killed between making one and recording the pod)."""
    import time

    out = []
    with contextlib.suppress(OSError):
        for entry in directory(root).iterdir():
            if str(entry) in known or not entry.name.startswith("pod-"):
                continue
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime >= grace:
                    out.append(entry)
    return out
