"""On-disk records: JSON files written temp -> fsync -> rename, and the storage flock.

Lock order (docs/design/images-and-storage.md): `storage.lock` is the only lock that
guards the JSON records (layers.json, images.json, containers.json); it is taken
first and held for the whole read-modify-write. A layer being applied holds an
flock on its own staging directory; code holding `storage.lock` only ever tries
those with LOCK_NB (never blocks on them), so there is no lock cycle. The content
store's ingest files are never locked while `storage.lock` waits.
"""

from __future__ import annotations

import _thread  # threading's primitives, without importing threading
import contextlib
import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from corral.content.store import fsync_dir
from corral.storage.errors import InvalidId, StorageCorrupt

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def now() -> str:
    """An RFC 3339 timestamp in UTC, as image-spec `created` fields."""
    stamp = time.time_ns()
    seconds, nanos = divmod(stamp, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"


def check_hex_id(value: str, what: str = "id") -> str:
    """A 64-hex id (a chain id's or container id's hex): the only form used as a path."""
    if not isinstance(value, str) or not _HEX64.match(value):
        raise InvalidId(f"invalid {what} {value!r}: expected 64 lowercase hex digits")
    return value


def digest_hex(digest: str, what: str = "digest") -> str:
    """`sha256:<hex>` -> `<hex>`, validated (so it can name a directory)."""
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise InvalidId(f"invalid {what} {digest!r}: expected sha256:<64 hex>")
    return check_hex_id(digest[7:], what)


def read_json(path: Path, default: Any) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return default
    if not data.strip():
        return default
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StorageCorrupt(f"{path}: not valid JSON: {exc}") from exc


def write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    """Atomically replace `path`: write a temp file, fsync it, rename, fsync the directory.
    `durable=False` skips both fsyncs (still atomic): for records that are rebuilt from
    the processes after a crash, such as the engine's per-container state."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{_thread.get_ident()}")
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def sync_file(path: Path) -> None:
    """fsync a file written with `durable=False` once it matters (its directory entry
    is made durable by the next durable write in that directory, or `fsync_dir`)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileLock:
    """An flock(2) on a file, reentrant within one thread of one process.

    Reentrancy lets the facade take the lock around a sequence of store calls that
    each take it too. flock locks belong to the open file description, so two
    FileLock objects on the same path in one process exclude each other (and a
    fork()ed child that opens its own FileLock is a separate holder).
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._depth = 0
        self._owner: int | None = None
        self._mutex = _thread.RLock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._mutex:
            if self._depth == 0 or self._owner != os.getpid():
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                self._owner = os.getpid()
                self._depth = 0
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing drops the flock
                    self._fd = None


def is_locked(path: Path) -> bool:
    """Someone (another open file description) holds an flock on `path` right now."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def try_lock_dir(path: Path) -> int | None:
    """flock(LOCK_EX|LOCK_NB) a directory: its fd if we got it, None if someone holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd
