"""A one-way-per-direction message channel between the runtime and its children.

Two pipes carry short text messages, one per line: ``tag payload``. Each message
is written with one write(2) below PIPE_BUF, so it arrives whole. The children
use it to ask for uid/gid maps, report the init's pid, ask for the hooks to run,
say they are ready, or report an error with its message.
"""

from __future__ import annotations

import os


class ChannelClosed(EOFError):
    pass


class Channel:
    __slots__ = ("_buffer", "read_fd", "write_fd")

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = b""

    def send(self, tag: str, payload: str = "") -> None:
        message = f"{tag} {payload}".replace("\n", "\\n") + "\n"
        os.write(self.write_fd, message.encode())

    def receive(self) -> tuple[str, str]:
        while b"\n" not in self._buffer:
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                raise ChannelClosed("the other end closed the channel")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        tag, _, payload = line.decode().partition(" ")
        return tag, payload.replace("\\n", "\n")

    def expect(self, wanted: str) -> str:
        tag, payload = self.receive()
        if tag == "error":
            raise ChildError(payload)
        if tag != wanted:
            raise ChildError(f"protocol error: expected {wanted!r}, got {tag!r}")
        return payload

    def expect_one_of(self, wanted: set[str]) -> str:
        tag, payload = self.receive()
        if tag == "error":
            raise ChildError(payload)
        if tag not in wanted:
            raise ChildError(f"protocol error: expected one of {sorted(wanted)}, got {tag!r}")
        return tag

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class ChildError(Exception):
    """An error a child process reported over the channel."""


def pair() -> tuple[tuple[int, int], tuple[int, int]]:
    """Two pipes: (parent_read, child_write) and (child_read, parent_write)."""
    up_read, up_write = os.pipe()
    down_read, down_write = os.pipe()
    return (up_read, down_write), (down_read, up_write)
