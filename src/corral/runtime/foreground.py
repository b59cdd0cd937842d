"""Foreground `run` and `exec`: wait for the process, forwarding signals to it.

The runtime is made a child subreaper before forking, so the container's
process (a grandchild) is re-parented to it and can be waited for. The exit
code follows runc: the process's code, or 128 + the signal that killed it.
"""

from __future__ import annotations

import os

FORWARDED = (1, 2, 3, 10, 12, 14, 15, 18, 20, 21, 22, 23, 26, 27, 28, 29, 30)


def forward_signals(pid: int) -> None:
    """From now on, send the FORWARDED signals we get to `pid` instead of dying of them."""
    import _signal as signal  # the C module; `signal` would import enum

    def forward(number: int, _frame: object) -> None:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass

    for number in FORWARDED:
        signal.signal(number, forward)


def wait_forwarding_signals(pid: int) -> int:
    forward_signals(pid)
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if done == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


class TerminalProxy:
    """`run -t` without --console-socket: receive the pty master over a socketpair and
    copy between it and our own stdin/stdout, with our terminal in raw mode."""

    def __init__(self) -> None:
        import socket

        self._socket = socket
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        os.set_inheritable(self.theirs.fileno(), True)
        self.master = -1

    def child_fd(self) -> int:
        return self.theirs.fileno()

    def receive_master(self) -> None:
        self.theirs.close()
        _, fds, _, _ = self._socket.recv_fds(self.ours, 4096, 1)
        self.master = fds[0]
        self.ours.close()

    def copy_until_exit(self, pid: int) -> int:
        import select
        import signal
        import termios
        import tty

        from corral.runtime import console

        saved = None
        if os.isatty(0):
            saved = termios.tcgetattr(0)
            tty.setraw(0)
            size = os.get_terminal_size(0)
            console.set_size(self.master, size.lines, size.columns)

            def resize(_number: int, _frame: object) -> None:
                size = os.get_terminal_size(0)
                console.set_size(self.master, size.lines, size.columns)

            signal.signal(signal.SIGWINCH, resize)
        try:
            sources = [0, self.master]
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    self._drain()
                    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) \
                        else os.WEXITSTATUS(status)
                try:
                    ready, _, _ = select.select(sources, [], [], 0.1)
                except InterruptedError:
                    continue
                for fd in ready:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        sources.remove(fd)
                        continue
                    os.write(self.master if fd == 0 else 1, data)
        finally:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, saved)

    def _drain(self) -> None:
        import select

        while select.select([self.master], [], [], 0)[0]:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            os.write(1, data)
