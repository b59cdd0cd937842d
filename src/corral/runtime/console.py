"""Terminals for containers (runc docs/terminals.md, "new terminal" mode).

With `process.terminal`, the container process gets a new pty made inside the
container (its /dev/pts), becomes the session leader with the pty as its
controlling terminal, and the pty's master is sent over the `--console-socket`
AF_UNIX socket with SCM_RIGHTS, for the caller (conmon, podman, a shell) to use.
"""

from __future__ import annotations

import fcntl  # imported with the module: the pty is opened after pivot_root or setns,
import os
import struct  # where the host's Python library is out of reach

from corral.errors import InvalidArgument, Unavailable

TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSWINSZ = 0x5414


def connect(path: str) -> int:
    """Connect to the console socket before entering the container; returns its fd."""
    import socket

    if not path:
        raise InvalidArgument("--console-socket: a terminal needs a console socket path")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise InvalidArgument(f"--console-socket {path!r}: cannot connect: {exc.strerror}") from None
    fd = sock.detach()
    os.set_inheritable(fd, True)
    return fd


def open_pty() -> tuple[int, str]:
    """Open a new pty from /dev/ptmx (the container's devpts); returns (master, slave path)."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise Unavailable(f"terminal: cannot open /dev/ptmx: {exc.strerror} (is devpts "
                          "mounted at /dev/pts?)") from None
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    return master, f"/dev/pts/{number}"


def send_master(socket_fd: int, master: int, name: str) -> None:
    import socket

    sock = socket.socket(fileno=socket_fd)
    try:
        socket.send_fds(sock, [name.encode()], [master])
    finally:
        sock.close()


def set_size(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def become_controlling(slave_path: str, size: dict | None) -> None:
    """setsid, open the pty's slave as the controlling terminal, and make it stdio."""
    os.setsid()
    slave = os.open(slave_path, os.O_RDWR)
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    if size:
        set_size(slave, size.get("height", 0), size.get("width", 0))
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def setup(socket_fd: int, size: dict | None) -> None:
    """The whole dance, run inside the container after its /dev/pts is mounted."""
    master, slave_path = open_pty()
    try:
        send_master(socket_fd, master, slave_path)
    finally:
        os.close(master)
    become_controlling(slave_path, size)
