"""Persistent network namespaces: a new netns bind-mounted on a file (as `ip netns add`
does under /run/netns), so it outlives its creator and CNI plugins can enter it by path.

The namespace is made by a short-lived thread (namespaces are per thread, and
unshare(CLONE_NEWNET) works in a multi-threaded process), which also brings `lo` up
and bind-mounts /proc/thread-self/ns/net.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
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
    failure: list[BaseException] = []

    def make() -> None:
        # a thread of its own: network namespaces are per thread, and unshare(CLONE_NEWNET),
        # unlike a new mount or user namespace, works in a multi-threaded process. The
        # thread ends right after; the bind mount keeps the namespace. (A forked child
        # did this before: 3-4 ms of copying this process's page tables.)
        try:
            syscalls.unshare(syscalls.CLONE_NEWNET)
            _loopback_up()
            syscalls.mount("/proc/thread-self/ns/net", str(path), None, MS_BIND)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failure.append(exc)

    thread = threading.Thread(target=make, name="corral-netns")
    thread.start()
    thread.join()
    if failure:
        with contextlib.suppress(OSError):
            path.unlink()
        raise SystemFailure(f"cannot create the network namespace {path}: "
                            f"{failure[0] or type(failure[0]).__name__}")
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
