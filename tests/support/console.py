"""A `--console-socket` server: receives the pty master a runtime sends (SCM_RIGHTS).

runc's docs/terminals.md: with `process.terminal` and `--console-socket PATH`,
the runtime connects to PATH and sends one message whose ancillary data holds
the pty master fd. `ConsoleSocket` accepts one connection in a thread, keeps
the master and copies everything the container writes into a buffer.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from pathlib import Path


class ConsoleSocket:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(1)
        self.master: int | None = None
        self.name = b""
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._got_master = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.server.settimeout(30)
            conn, _ = self.server.accept()
        except OSError:
            self._got_master.set()
            return
        with conn:
            conn.settimeout(30)
            try:
                message, fds, _, _ = socket.recv_fds(conn, 1024, 4)
            except OSError:
                self._got_master.set()
                return
            self.name = message
            if fds:
                self.master = fds[0]
                for extra in fds[1:]:
                    os.close(extra)
        self._got_master.set()
        if self.master is None:
            return
        while not self._closed.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: every slave end closed
                break
            if not data:
                break
            with self._lock:
                self._buffer += data

    def wait_master(self, timeout: float = 10.0) -> int:
        if not self._got_master.wait(timeout) or self.master is None:
            raise AssertionError("no pty master arrived on the console socket")
        return self.master

    def write(self, data: bytes) -> None:
        os.write(self.wait_master(), data)

    def output(self) -> str:
        with self._lock:
            return self._buffer.decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.output()
            if text in current:
                return current
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared on the console; got {self.output()!r}")

    def close(self) -> None:
        self._closed.set()
        try:
            self.server.close()
        except OSError:
            pass
        self._thread.join(timeout=2)
        if self.master is not None:
            try:
                os.close(self.master)
            except OSError:
                pass
            self.master = None
        try:
            os.unlink(self.path)
        except OSError:
            pass
