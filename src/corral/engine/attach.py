"""Terminal plumbing for attach and exec: raw mode, window size, detach keys, and the
two byte pumps — conmon's attach socket (`pump_attach`) and a pty master received over
a runtime's `--console-socket` (`receive_console` + `pump_pty`).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import selectors
import signal
import struct
import termios
from collections.abc import Callable, Iterator

from corral.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(text: str | None) -> bytes:
    """docker's syntax: `ctrl-p,ctrl-q`, `a`, `ctrl-@`...; empty disables detaching."""
    if text is None:
        text = DEFAULT_DETACH_KEYS
    if not text:
        return b""
    out = bytearray()
    for key in text.split(","):
        key = key.strip().lower()
        if len(key) == 1:
            out.append(ord(key))
        elif key.startswith("ctrl-") and len(key) == 6 and (key[5].isalpha() or key[5] in "@[\\]^_"):
            out.append(ord(key[5].upper()) & 0x1F)
        else:
            raise InvalidArgument(f"--detach-keys: invalid key {key!r} (e.g. ctrl-p,ctrl-q)")
    return bytes(out)


def window_size(fd: int) -> tuple[int, int] | None:
    try:
        data = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols = struct.unpack("HHHH", data)[:2]
    return (rows, cols) if rows and cols else None


def set_window_size(fd: int, rows: int, cols: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@contextlib.contextmanager
def raw_terminal(fd: int | None) -> Iterator[None]:
    if fd is None or not os.isatty(fd):
        yield
        return
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def on_winch(callback: Callable[[], None] | None) -> Iterator[None]:
    if callback is None:
        yield
        return
    previous = signal.signal(signal.SIGWINCH, lambda *_: callback())
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


class _DetachMatcher:
    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, detach?)"""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            if byte == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    return bytes(out), True
                continue
            if self.matched:
                out += self.keys[:self.matched]
                self.matched = 0
                if byte == self.keys[0]:
                    self.matched = 1
                    continue
            out.append(byte)
        return bytes(out), False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            selectors.DefaultSelector().register(fd, selectors.EVENT_WRITE)
            continue
        view = view[n:]


def pump_attach(sock: socket.socket, *, stdin_fd: int | None, stdout_fd: int, stderr_fd: int,
                detach_keys: bytes = b"") -> str:
    """Copy conmon's attach socket to stdout/stderr and stdin to it. Returns "exited"
    (the container closed its output) or "detached"."""
    import socket

    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    if stdin_fd is not None:
        sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
    matcher = _DetachMatcher(detach_keys)
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "sock":
                    try:
                        data = sock.recv(8193)
                    except InterruptedError:
                        continue
                    except ConnectionResetError:
                        return "exited"
                    if not data:
                        return "exited"
                    _write_all(stderr_fd if data[0] == 3 else stdout_fd, data[1:])
                else:
                    try:
                        data = os.read(stdin_fd, 4096)  # type: ignore[arg-type]
                    except InterruptedError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(stdin_fd)  # type: ignore[arg-type]
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_WR)
                        continue
                    data, detach = matcher.feed(data)
                    if data:
                        with contextlib.suppress(OSError):
                            sock.sendall(data)
                    if detach:
                        return "detached"
    finally:
        sel.close()


def console_listener(path: str) -> socket.socket:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1)
    return sock


def receive_console(listener: socket.socket, timeout: float = 60) -> int:
    """Accept the runtime's connection and take the pty master it sends (SCM_RIGHTS)."""
    import socket

    listener.settimeout(timeout)
    conn, _ = listener.accept()
    with conn:
        fds = array.array("i")
        _msg, ancdata, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize * 4))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise OSError("the runtime sent no console fd")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def pump_pty(master: int, *, stdin_fd: int | None, stdout_fd: int, detach_keys: bytes = b""
             ) -> str:
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ, "pty")
    if stdin_fd is not None:
        sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
    matcher = _DetachMatcher(detach_keys)
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "pty":
                    try:
                        data = os.read(master, 65536)
                    except InterruptedError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        return "exited"
                    _write_all(stdout_fd, data)
                else:
                    try:
                        data = os.read(stdin_fd, 4096)  # type: ignore[arg-type]
                    except InterruptedError:
                        continue
                    if not data:
                        sel.unregister(stdin_fd)  # type: ignore[arg-type]
                        with contextlib.suppress(OSError):
                            _write_all(master, b"\x04")
                        continue
                    data, detach = matcher.feed(data)
                    if data:
                        _write_all(master, data)
                    if detach:
                        return "detached"
    finally:
        sel.close()


__all__ = ["DEFAULT_DETACH_KEYS", "console_listener", "on_winch", "parse_detach_keys",
           "pump_attach", "pump_pty", "raw_terminal", "receive_console", "set_window_size",
           "window_size"]
