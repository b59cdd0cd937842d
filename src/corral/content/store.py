"""The content store: blobs addressed by digest, verified before they are visible.

In the spirit of containerd's local content store (plugins/content/local):

```
<root>/blobs/<alg>/<hex>   committed blobs, read-only (0444), verified on ingest
<root>/ingest/<random>     in-progress writes, each flock()ed by its writer
```

`root` is the content directory itself (`<store root>/content` in the layout of
docs/design/images-and-storage.md).

Ingest writes to a fresh file under `ingest/`, hashes while writing, fsyncs,
checks the expected digest and size, and only then renames the file to
`blobs/<alg>/<hex>` (and fsyncs that directory). A blob is therefore either
absent or complete and verified under its name; a mismatch or any error
removes the partial file. Two processes ingesting the same blob both rename a
verified file with identical bytes onto the same name, which is harmless.

Crash repair: a writer holds flock() on its ingest file until it is done, so
on open the store removes the ingest files nobody holds a lock on and that are
older than `stale_after` seconds (the age check covers the instant between
creating a file and locking it).

Resumable writes (`writer(expected, size, resumable=True)`, containerd's
ingest refs): the file is `ingest/partial-<alg>-<hex>`, named by the digest
it must end up with. A writer that stops without committing (an error, a
signal, a kill) leaves it; the next writer of that digest rehashes the bytes
that are there, reports them as `offset` (a registry pull asks for the rest
with a Range request) and appends. The digest is checked over the whole blob
at commit, so a damaged partial never becomes a blob: a mismatch removes it.
Unlocked partials are kept `STALE_PARTIAL_SECONDS` (a day), not 60 s.

Every path is built from a digest that went through `corral.oci.digest.parse`,
so `sha256:../x` and friends never reach the file system.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from corral.errors import InvalidArgument, NotFound
from corral.oci import digest as digests
from corral.oci.digest import ALGORITHMS, DigestMismatch
from corral.oci.image import OCTET_STREAM, Descriptor

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import BinaryIO, Self

__all__ = ["STALE_INGEST_SECONDS", "STALE_PARTIAL_SECONDS", "BlobNotFound", "ContentStore",
           "DigestMismatch", "Writer"]

#: Unlocked ingest files older than this are removed when a store is opened.
STALE_INGEST_SECONDS = 60.0
#: Unlocked resumable partials (`ingest/partial-*`) are kept this long.
STALE_PARTIAL_SECONDS = 24 * 3600.0
PARTIAL_PREFIX = "partial-"

_CHUNK = 1 << 20
_BLOB_MODE = 0o444


class BlobNotFound(NotFound):
    """No blob with that digest is in the store."""


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a rename into it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunks(source: Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    read = getattr(source, "read", None)
    if read is None:
        yield from source  # type: ignore[misc]
        return
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            return
        yield chunk


class ContentStore:
    """Blobs under `root/blobs/<alg>/<hex>`; see the module docstring."""

    def __init__(self, root: Path | str, *, stale_after: float = STALE_INGEST_SECONDS,
                 repair: bool = True) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.ingest_dir = self.root / "ingest"
        self.stale_after = stale_after
        for directory in (self.blobs_dir, self.ingest_dir):
            directory.mkdir(mode=0o700 if directory is self.ingest_dir else 0o755,
                            parents=True, exist_ok=True)
        if repair:
            self.repair()

    # -- paths ---------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        alg, hex_ = digests.parse(digest)
        return self.blobs_dir / alg / hex_

    def path(self, digest: str) -> Path:
        """The file holding blob `digest`; BlobNotFound if it is not in the store."""
        path = self._blob_path(digest)
        if not path.is_file():
            raise BlobNotFound(f"blob {digest} not found in {self.root}")
        return path

    # -- reading -------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def info(self, digest: str, media_type: str = OCTET_STREAM) -> Descriptor:
        """A descriptor of the stored blob (the store keeps no media types)."""
        path = self._blob_path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found in {self.root}") from None
        return Descriptor(media_type, digest, st.st_size)

    def open(self, digest: str) -> BinaryIO:
        """Open blob `digest` for reading (binary); BlobNotFound if absent."""
        path = self._blob_path(digest)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found in {self.root}") from None

    def read_bytes(self, digest: str, max_size: int | None = None) -> bytes:
        """The whole blob; InvalidArgument if it is larger than `max_size`."""
        with self.open(digest) as f:
            if max_size is not None:
                size = os.fstat(f.fileno()).st_size
                if size > max_size:
                    raise InvalidArgument(f"blob {digest} is {size} bytes, more than the "
                                          f"{max_size} allowed here")
            return f.read()

    def walk(self) -> Iterator[str]:
        """The digests of every committed blob (sorted per algorithm)."""
        for alg, length in ALGORITHMS.items():
            directory = self.blobs_dir / alg
            try:
                names = sorted(os.listdir(directory))
            except FileNotFoundError:
                continue
            for name in names:
                candidate = f"{alg}:{name}"
                if len(name) == length and digests.is_valid(candidate) \
                        and (directory / name).is_file():
                    yield candidate

    # -- writing -------------------------------------------------------------

    def ingest(self, chunks: Iterable[bytes] | BinaryIO, expected: str | None = None,
               size: int | None = None, *,
               media_type: str = OCTET_STREAM) -> Descriptor:
        """Store the bytes of `chunks` (an iterable of bytes or a readable binary file).

        With `expected`, the content must hash to that digest (its algorithm is
        used), and with `size` it must be that long; otherwise DigestMismatch is
        raised and nothing is left behind. If `expected` is already stored,
        nothing is read and the stored blob's descriptor is returned.
        """
        alg = digests.CANONICAL
        if expected is not None:
            alg, _ = digests.parse(expected, "expected digest")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)
                                 or size < 0):
            raise InvalidArgument(f"expected size: must be a non-negative integer, got {size!r}")
        if expected is not None:
            try:
                st = self._blob_path(expected).stat()
            except FileNotFoundError:
                pass
            else:
                if size is not None and st.st_size != size:
                    raise DigestMismatch(
                        f"blob {expected}: expected size {size}, but the stored blob "
                        f"with that digest has {st.st_size} bytes", expected, expected)
                return Descriptor(media_type, expected, st.st_size)

        with self.writer(expected, size, alg=alg) as w:
            for chunk in _chunks(chunks):
                w.write(chunk)
            return w.commit(media_type)

    def writer(self, expected: str | None = None, size: int | None = None, *,
               resumable: bool = False, alg: str | None = None) -> Writer:
        """A `Writer` for one blob (see the module docstring; `ingest` uses one).

        `resumable` (needs `expected`) keeps a partial file the next writer of
        the same digest continues from (`Writer.offset`); when another process
        is writing that partial right now, this writer starts a fresh file.
        """
        if expected is not None:
            alg, hex_ = digests.parse(expected, "expected digest")
        self.ingest_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if resumable and expected is not None:
            opened = self._open_partial(self.ingest_dir / f"{PARTIAL_PREFIX}{alg}-{hex_}")
            if opened is not None:
                return Writer(self, opened, expected, size, alg or digests.CANONICAL,
                              resumable=True)
        fd, tmp = self._create_ingest_file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            _unlink_quietly(str(tmp))
            raise
        return Writer(self, (fd, tmp), expected, size, alg or digests.CANONICAL)

    def _open_partial(self, path: Path) -> tuple[int, Path] | None:
        """Open and lock a resumable partial (created if absent); None if it is busy."""
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        for _ in range(8):
            fd = os.open(path, flags, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        os.close(fd)
                        return None
                    raise
                st = os.fstat(fd)
                try:
                    current = os.stat(path, follow_symlinks=False)
                except FileNotFoundError:
                    current = None
                # repair() may have removed the file between our open and our lock
                if current is not None and (current.st_ino, current.st_dev) == \
                        (st.st_ino, st.st_dev) and stat.S_ISREG(st.st_mode):
                    return fd, path
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        return None

    def write_bytes(self, data: bytes, expected: str | None = None, *,
                    media_type: str = OCTET_STREAM) -> Descriptor:
        """Store `data` (verified against `expected` when given)."""
        return self.ingest((data,), expected, len(data), media_type=media_type)

    def _create_ingest_file(self) -> tuple[int, Path]:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW  # read by followers
        while True:
            path = self.ingest_dir / os.urandom(16).hex()
            try:
                return os.open(path, flags, 0o600), path
            except FileExistsError:  # pragma: no cover - 128 random bits
                continue

    # -- removal and repair --------------------------------------------------

    def delete(self, digest: str) -> None:
        """Remove blob `digest`; BlobNotFound if it is not stored."""
        path = self._blob_path(digest)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found in {self.root}") from None
        fsync_dir(path.parent)

    def repair(self) -> list[str]:
        """Remove abandoned ingest files (unlocked and older than `stale_after`).

        Returns the names removed. Safe while other processes ingest: their
        files are locked.
        """
        removed: list[str] = []
        now = time.time()
        try:
            entries = list(os.scandir(self.ingest_dir))
        except FileNotFoundError:
            return removed
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            keep = STALE_PARTIAL_SECONDS if entry.name.startswith(PARTIAL_PREFIX) \
                else self.stale_after
            if now - st.st_mtime < max(keep, self.stale_after):
                continue
            if not stat.S_ISREG(st.st_mode):
                # Nothing but our own regular files belongs here.
                if not stat.S_ISDIR(st.st_mode):
                    _unlink_quietly(entry.path)
                    removed.append(entry.name)
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        continue  # a live writer holds it
                    raise
                _unlink_quietly(entry.path)
                removed.append(entry.name)
            finally:
                os.close(fd)
        return removed


class Writer:
    """One blob being written under `ingest/` (containerd's content.Writer).

    `offset` bytes are there already (a resumed partial, hashed again on open);
    `write` appends and hashes; `commit` fsyncs, checks size and digest and
    renames the file into `blobs/`; `close` without a commit keeps a resumable
    partial that has bytes (removes anything else). `fd` may be read (pread)
    while the writer appends: written bytes are visible at once.
    """

    def __init__(self, store: ContentStore, opened: tuple[int, Path], expected: str | None,
                 size: int | None, alg: str, *, resumable: bool = False) -> None:
        self.store = store
        self.fd, self.path = opened
        self.expected = expected
        self.size = size
        self.resumable = resumable
        self.committed = False
        self.closed = False
        self._hasher = digests.Hasher(alg)
        self.offset = 0
        if resumable:
            try:
                self._rehash()
            except BaseException:
                self.close()
                raise

    def _rehash(self) -> None:
        end = os.fstat(self.fd).st_size
        if self.size is not None and end > self.size:
            end = 0
        pos = 0
        while pos < end:
            data = os.pread(self.fd, min(_CHUNK, end - pos), pos)
            if not data:
                break
            self._hasher.update(data)
            pos += len(data)
        if pos != os.fstat(self.fd).st_size:
            os.ftruncate(self.fd, pos)
        self.offset = pos

    def restart(self) -> None:
        """Drop what is there and start from byte 0."""
        os.ftruncate(self.fd, 0)
        self._hasher = digests.Hasher(self._hasher.algorithm)
        self.offset = 0

    def write(self, data: bytes | memoryview) -> None:
        size = self.size
        if size is not None and self.offset + len(data) > size:
            raise DigestMismatch(
                f"blob {self.expected or '(no digest given)'}: content is longer "
                f"than the expected size {size}", self.expected)
        self._hasher.update(data)
        view = memoryview(data)
        offset = self.offset
        while view:
            n = os.pwrite(self.fd, view, offset)
            view = view[n:]
            offset += n
        self.offset = offset

    def verify(self) -> str:
        """Check size and digest of what was written (no more writes after it); the
        digest. DigestMismatch removes the file. `commit` verifies too."""
        expected, size = self.expected, self.size
        actual = self._hasher.digest()
        if size is not None and self.offset != size:
            self._discard()
            raise DigestMismatch(
                f"blob {expected or actual}: expected size {size}, got {self.offset} bytes",
                expected, actual)
        if expected is not None and actual != expected:
            self._discard()
            raise DigestMismatch(f"blob digest mismatch: expected {expected}, got {actual}",
                                 expected, actual)
        return actual

    def commit(self, media_type: str = OCTET_STREAM) -> Descriptor:
        """Verify, fsync and publish the blob; DigestMismatch removes the file."""
        actual = self.verify()
        os.fsync(self.fd)
        os.fchmod(self.fd, _BLOB_MODE)
        target = self.store._blob_path(actual)
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.rename(self.path, target)
        self.committed = True
        fsync_dir(target.parent)
        return Descriptor(media_type, actual, self.offset)

    def _discard(self) -> None:
        self.resumable = False
        self.close()

    def close(self) -> None:
        """Release the file: kept when it is a resumable partial with bytes, else removed."""
        if self.closed:
            return
        self.closed = True
        try:
            if not self.committed and not (self.resumable and self.offset > 0):
                _unlink_quietly(str(self.path))
        finally:
            os.close(self.fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
