"""Container directories made before their record: `corral run` launches the container's
monitor first (corral.cli.prelaunch), and conmon needs the directory (its working
directory, pid file and sockets) before the store is even opened.

`reserve` makes `<root>/storage/containers/<id>` under the store's lock, with a marker
naming the process that made it. `ContainerStore.repair` leaves such a directory alone
while that process lives (and removes it as any unrecorded one once it is gone);
`ContainerStore.create(..., reserved=True)` adopts it and drops the marker.

Only `os` and `fcntl`: this runs before the rest of the store is imported.
"""

from __future__ import annotations

import fcntl
import os

#: the store's lock file in <root>/storage (corral.storage.store takes the same lock)
LOCK_NAME = "storage.lock"
#: in a reserved directory: the pid of the process that reserved it
MARKER = ".reserved-by"


def reserve(home: str, container_id: str) -> str:
    """Make `<home>/containers/<container_id>` with the marker, under the store's lock
    (so that a concurrent repair sees both or neither); returns its path.
    FileExistsError if it exists, FileNotFoundError if `<home>/containers` does not."""
    directory = os.path.join(home, "containers", container_id)
    lock = os.open(os.path.join(home, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.mkdir(directory)
        fd = os.open(os.path.join(directory, MARKER),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    finally:
        os.close(lock)  # drops the flock
    return directory


def holder(directory: str | os.PathLike[str]) -> int | None:
    """The pid that reserved `directory`, None if it is not a reserved directory."""
    try:
        with open(os.path.join(directory, MARKER), "rb") as f:
            return int(f.read().strip() or b"0") or None
    except (OSError, ValueError):
        return None


def held(directory: str | os.PathLike[str]) -> bool:
    """Reserved by a process that still lives (repair must leave it alone)."""
    pid = holder(directory)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release(directory: str | os.PathLike[str]) -> None:
    """The record exists now: the directory is an ordinary container directory."""
    try:
        os.unlink(os.path.join(directory, MARKER))
    except FileNotFoundError:
        pass


def discard(directory: str | os.PathLike[str]) -> None:
    """Remove a directory this process reserved and no record adopted (a reserved one
    that a record adopted has no marker any more, and stays)."""
    if holder(directory) == os.getpid():
        from corral.storage.drivers._util import remove_tree

        remove_tree(directory)


__all__ = ["LOCK_NAME", "MARKER", "discard", "held", "holder", "release", "reserve"]
