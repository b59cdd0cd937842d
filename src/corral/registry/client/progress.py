"""Copy progress: a bar per blob on a terminal (rich), quiet plain lines otherwise.

The copy routine reports through three calls: `start(desc, kind)` when a blob
is about to be copied, `advance(digest, n)` as its bytes flow (from any
thread), `done(digest, status)` with "done", "skipped" (the destination had
it), "mounted" or "exists". Plain output mirrors podman's:

    Copying blob 3f8a1b2c4d5e done
    Copying blob 9a8b7c6d5e4f skipped: already exists
    Copying config 61f2a2c1b0e9 done
    Writing manifest to image destination
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO


def short(digest: str) -> str:
    return digest.partition(":")[2][:12] or digest


class Quiet:
    def start(self, desc: Any, kind: str = "blob") -> None: ...

    def advance(self, digest: str, n: int) -> None: ...

    def done(self, digest: str, status: str = "done") -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


class Plain(Quiet):
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.kinds: dict[str, str] = {}
        self.lock = threading.Lock()

    def start(self, desc: Any, kind: str = "blob") -> None:
        self.kinds[desc.digest] = kind

    def done(self, digest: str, status: str = "done") -> None:
        text = {"skipped": "skipped: already exists", "exists": "skipped: already exists",
                "mounted": "done (mounted)"}.get(status, status)
        with self.lock:
            print(f"Copying {self.kinds.get(digest, 'blob')} {short(digest)} {text}",
                  file=self.out, flush=True)

    def note(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)


class Bars(Quiet):
    """rich progress bars (imported only when a terminal asks for them)."""

    def __init__(self, out: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(file=out or sys.stderr), transient=False)
        self.progress.start()
        self.tasks: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}

    def start(self, desc: Any, kind: str = "blob") -> None:
        self.kinds[desc.digest] = kind
        if desc.digest not in self.tasks:
            self.tasks[desc.digest] = self.progress.add_task(
                f"Copying {kind} {short(desc.digest)}", total=desc.size or None)

    def advance(self, digest: str, n: int) -> None:
        task = self.tasks.get(digest)
        if task is not None:
            self.progress.advance(task, n)

    def done(self, digest: str, status: str = "done") -> None:
        task = self.tasks.get(digest)
        if task is None:
            return
        kind = self.kinds.get(digest, "blob")
        label = {"skipped": "skipped: already exists", "exists": "skipped: already exists",
                 "mounted": "done (mounted)"}.get(status, status)
        total = self.progress.tasks[task].total if task < len(self.progress.tasks) else None
        self.progress.update(task, description=f"Copying {kind} {short(digest)} {label}",
                             completed=total or 0)

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        self.progress.stop()


def for_terminal(quiet: bool = False, out: TextIO | None = None) -> Quiet:
    out = out or sys.stderr
    if quiet:
        return Quiet()
    if out.isatty():
        try:
            return Bars(out)
        except ImportError:
            pass
    return Plain(out)
