"""mount(8)-style options to mount(2) flags, propagation, and safe paths in a rootfs.

`parse_options` splits an OCI mount's `options` into mount flags, propagation
changes, and the data string handed to the filesystem (config.md#mounts).
`secure_join` resolves a container path inside the rootfs, following symlinks
as if the rootfs were `/`, so a hostile image cannot aim a mount outside it.
"""

from __future__ import annotations

import os

from corral.errors import InvalidArgument
from corral.linux import syscalls as sc

# option -> (clear?, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, sc.MS_SYNCHRONOUS), "atime": (True, sc.MS_NOATIME),
    "bind": (False, sc.MS_BIND), "defaults": (False, 0), "dev": (True, sc.MS_NODEV),
    "diratime": (True, sc.MS_NODIRATIME), "dirsync": (False, sc.MS_DIRSYNC),
    "exec": (True, sc.MS_NOEXEC), "iversion": (False, sc.MS_I_VERSION),
    "lazytime": (False, sc.MS_LAZYTIME), "loud": (True, sc.MS_SILENT),
    "mand": (False, sc.MS_MANDLOCK), "noatime": (False, sc.MS_NOATIME),
    "nodev": (False, sc.MS_NODEV), "nodiratime": (False, sc.MS_NODIRATIME),
    "noexec": (False, sc.MS_NOEXEC), "noiversion": (True, sc.MS_I_VERSION),
    "nolazytime": (True, sc.MS_LAZYTIME), "nomand": (True, sc.MS_MANDLOCK),
    "norelatime": (True, sc.MS_RELATIME), "nostrictatime": (True, sc.MS_STRICTATIME),
    "nosuid": (False, sc.MS_NOSUID), "nosymfollow": (False, sc.MS_NOSYMFOLLOW),
    "rbind": (False, sc.MS_BIND | sc.MS_REC), "relatime": (False, sc.MS_RELATIME),
    "remount": (False, sc.MS_REMOUNT), "ro": (False, sc.MS_RDONLY),
    "rw": (True, sc.MS_RDONLY), "silent": (False, sc.MS_SILENT),
    "strictatime": (False, sc.MS_STRICTATIME), "suid": (True, sc.MS_NOSUID),
    "sync": (False, sc.MS_SYNCHRONOUS),
}

PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}

# Options the runtime understands but that are not mount(2) flags or data.
IGNORED = frozenset({"tmpcopyup", "copy-symlink", "idmap", "ridmap", "notmpcopyup"})

# statvfs(3) f_flag bits that the kernel locks on bind remounts (must be kept).
_ST_LOCKED = {1: sc.MS_RDONLY, 2: sc.MS_NOSUID, 4: sc.MS_NODEV, 8: sc.MS_NOEXEC,
              1024: sc.MS_NOATIME, 2048: sc.MS_NODIRATIME, 4096: sc.MS_RELATIME}


class MountOptions:
    """One mount's options, split by how the kernel takes them."""

    __slots__ = ("data", "flags", "propagation", "recursive_readonly")

    def __init__(self) -> None:
        self.flags = 0
        self.propagation: list[int] = []
        self.data: list[str] = []
        self.recursive_readonly = False


def parse_options(options: list[str] | None) -> MountOptions:
    parsed = MountOptions()
    for option in options or ():
        if option in FLAGS:
            clear, flag = FLAGS[option]
            if clear:
                parsed.flags &= ~flag
            else:
                parsed.flags |= flag
        elif option in PROPAGATION:
            parsed.propagation.append(PROPAGATION[option])
        elif option == "rro":
            parsed.flags |= sc.MS_RDONLY
            parsed.recursive_readonly = True
        elif option in IGNORED:
            continue
        else:
            parsed.data.append(option)
    return parsed


def propagation_flag(name: str, field: str) -> int:
    try:
        return PROPAGATION[name]
    except KeyError:
        raise InvalidArgument(f"{field}: unknown propagation {name!r}") from None


def locked_flags(path: str) -> int:
    """The flags of the mount at `path` that a bind remount must keep."""
    current = os.statvfs(path).f_flag
    flags = 0
    for bit, flag in _ST_LOCKED.items():
        if current & bit:
            flags |= flag
    return flags


def secure_join(root: str, unsafe: str) -> str:
    """Join `unsafe` to `root`, resolving symlinks as if `root` were `/`.

    The result is always inside `root` (filepath-securejoin's algorithm): a
    symlink to `/etc` or `../../..` inside the rootfs stays inside the rootfs.
    """
    parts = [p for p in unsafe.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        links += 1
        if links > 255:
            raise InvalidArgument(f"{unsafe}: too many symlinks inside the rootfs")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p and p != "."] + parts
    return os.path.join(root, *resolved)
