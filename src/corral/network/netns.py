"""Persistent network namespaces: a new netns bind-mounted on a file (as `ip netns add`
does under /run/netns), so it outlives its creator and CNI plugins can enter it by path.

The namespace is made in a forked child (unshare(CLONE_NEWNET) needs no other thread
sharing the process), which also brings `lo` up and bind-mounts /proc/self/ns/net.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from pathlib import Path

from corral.errors import SystemFailure

MS_BIND = 0x1000
MNT_DETACH = 0x2
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def _loopback_up() -> None:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def is_netns(path: Path | str) -> bool:
    """`path` has a network namespace mounted on it (a stale file after a reboot does not)."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path) or ".").st_dev
    except OSError:
        return False


def create(path: Path | str) -> Path:
    """A new network namespace with `lo` up, mounted on `path` (which must not exist)."""
    from corral.linux import syscalls

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    except FileExistsError:
        if is_netns(path):
            raise SystemFailure(f"network namespace {path} exists already") from None
        # a stale file (e.g. after a reboot): reuse it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: single-threaded, so unshare works
        os.close(read_end)
        message = b""
        try:
            syscalls.unshare(syscalls.CLONE_NEWNET)
            _loopback_up()
            syscalls.mount("/proc/self/ns/net", str(path), None, MS_BIND)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            message = str(exc).encode() or type(exc).__name__.encode()
        os.write(write_end, message)
        os._exit(1 if message else 0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    if message or os.waitstatus_to_exitcode(status) != 0:
        with contextlib.suppress(OSError):
            path.unlink()
        raise SystemFailure(f"cannot create the network namespace {path}: "
                            f"{message.decode(errors='replace') or 'child failed'}")
    return path


def remove(path: Path | str) -> None:
    """Unmount and delete; a missing or already unmounted file is fine."""
    from corral.linux import syscalls

    path = str(path)
    if is_netns(path):
        try:
            syscalls.umount(path, MNT_DETACH)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise SystemFailure(f"cannot unmount the network namespace {path}: "
                                    f"{exc.strerror}") from None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
