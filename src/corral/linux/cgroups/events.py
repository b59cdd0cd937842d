"""OOM notifications (runc-events(8) "oom" events).

v1: an eventfd registered on memory.oom_control through cgroup.event_control; the
kernel signals it on every OOM in the cgroup (and once when the cgroup goes away).
v2: the oom_kill counter in memory.events, polled (inotify on it would save the
wake-ups, the count is what matters).
"""

from __future__ import annotations

import os
import select

from corral.linux.cgroups.common import flat_keyed, read


class V1OomWatcher:
    def __init__(self, path: str) -> None:
        self.path = path
        self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.control = os.open(os.path.join(path, "memory.oom_control"),
                               os.O_RDONLY | os.O_CLOEXEC)
        with open(os.path.join(path, "cgroup.event_control"), "w") as f:
            f.write(f"{self.efd} {self.control}")

    def wait(self, timeout: float) -> int:
        """OOMs since the last call (blocks up to `timeout` seconds); -1 once the
        cgroup is gone."""
        ready, _, _ = select.select([self.efd], [], [], max(timeout, 0))
        if not ready:
            return 0
        try:
            count = os.eventfd_read(self.efd)
        except BlockingIOError:
            return 0
        if not os.path.exists(os.path.join(self.path, "cgroup.event_control")):
            return -1
        return count

    def close(self) -> None:
        os.close(self.efd)
        os.close(self.control)


class V2OomWatcher:
    def __init__(self, path: str) -> None:
        self.path = path
        self.seen = self._count()

    def _count(self) -> int:
        return flat_keyed(read(self.path, "memory.events")).get("oom_kill", 0)

    def wait(self, timeout: float) -> int:
        import time

        deadline = time.monotonic() + max(timeout, 0)
        while True:
            if not os.path.isdir(self.path):
                return -1
            count = self._count()
            if count != self.seen:
                new, self.seen = count - self.seen, count
                return new
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return 0
            time.sleep(min(remaining, 0.1))

    def close(self) -> None:
        pass
