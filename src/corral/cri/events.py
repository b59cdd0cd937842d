"""GetContainerEvents: a fan-out of container lifecycle events to every subscriber.

The service publishes CREATED/STARTED/STOPPED/DELETED as it acts (for pod sandboxes
too, with the sandbox id as container id, as containerd does); a watcher thread
reports containers that exit on their own (conmon's exit file appears); a container the
server stops itself is `claim`ed first, and the stop reports it. Each
subscriber has a bounded queue: a client that stops reading loses events, not the
server's memory.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

QUEUE_SIZE = 1024


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[queue.Queue] = []
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def publish(self, make: Callable[[], Any]) -> None:
        """Build the event (only when someone listens) and queue it for everyone."""
        with self._lock:
            subscribers = list(self._subscribers)
        if not subscribers:
            return
        try:
            event = make()
        except Exception:  # noqa: BLE001 - a vanished object: no event
            return
        if event is None:
            return
        for q in subscribers:
            with contextlib.suppress(queue.Full):
                q.put_nowait(event)

    def subscribe(self, alive: Callable[[], bool]) -> Iterator[Any]:
        """Events until `alive()` turns false (the RPC was cancelled)."""
        q: queue.Queue = queue.Queue(QUEUE_SIZE)
        with self._lock:
            self._subscribers.append(q)
        try:
            while alive():
                try:
                    yield q.get(timeout=0.25)
                except queue.Empty:
                    continue
        finally:
            with self._lock:
                self._subscribers.remove(q)


class ExitWatcher:
    """Polls for exit files of containers known to run; calls `on_exit(id)` once."""

    def __init__(self, exit_file: Callable[[str], Any], on_exit: Callable[[str], None],
                 interval: float = 0.2) -> None:
        self._exit_file, self._on_exit, self._interval = exit_file, on_exit, interval
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cri-exits")
        self._thread.start()

    def watch(self, container_id: str) -> None:
        with self._lock:
            self._running.add(container_id)

    def forget(self, container_id: str) -> None:
        self.claim(container_id)

    def claim(self, container_id: str) -> bool:
        """Stop watching it; True if it was watched (its exit not reported yet): the
        caller, which stops it, reports the exit itself."""
        with self._lock:
            if container_id in self._running:
                self._running.discard(container_id)
                return True
            return False

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = list(self._running)
            for ident in ids:
                if self._exit_file(ident).exists() and self.claim(ident):
                    with contextlib.suppress(Exception):
                        self._on_exit(ident)

    def close(self) -> None:
        self._stop.set()
