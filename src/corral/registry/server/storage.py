"""The registry's filesystem storage, laid out like distribution's:

```
<root>/content/blobs/<alg>/<hex>                        every blob and manifest (ContentStore)
<root>/repositories/<name>/_layers/<alg>/<hex>          blob linked into the repository (empty)
<root>/repositories/<name>/_manifests/revisions/<alg>/<hex>   manifest in the repository
                                                        (holds its media type)
<root>/repositories/<name>/_manifests/tags/<tag>        the tag's manifest digest
<root>/repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>
                                                        a referrer of subject <alg>:<hex>
                                                        (its descriptor, JSON)
<root>/uploads/<id>/{data,info}                         upload sessions
```

Blobs go through `corral.content.ContentStore` (ingest -> verify -> rename) or,
for upload sessions, the same discipline done in place: the session's data
file is hashed while written, verified against the digest of the closing
PUT, fsynced, made read-only and renamed onto `blobs/<alg>/<hex>`. Links,
tags and referrer entries are small files written temp -> fsync -> rename, so
a reader sees a file whole or not at all. Concurrent uploads of one blob both
rename identical verified bytes onto one name. An upload session is
`flock()`ed by the request working on it, so two PATCHes to one session are
serialized (across processes too).

Paths are built only from names, tags, digests and upload ids validated in
`routes` (no `..`, no `_` prefix). Blob deletion unlinks the blob from the
repository; the shared blob stays for other repositories (no GC yet).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Self

from corral.content.store import BlobNotFound, ContentStore, fsync_dir
from corral.oci import digest as digests
from corral.registry.server import routes

_CHUNK = 1 << 20
#: Upload sessions untouched for this long are removed when storage opens.
UPLOAD_TTL_SECONDS = 24 * 3600.0


def write_atomic(path: Path, data: bytes) -> None:
    """temp -> fsync -> rename -> fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{os.urandom(8).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        with open(fd, "wb", closefd=False) as f:
            f.write(data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


class UploadUnknown(Exception):
    pass


class UploadRangeError(Exception):
    """A chunk does not start at the session's current size."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


@dataclass
class _HashState:
    hasher: digests.Hasher


class Upload:
    """An open (flocked) upload session; use as a context manager."""

    def __init__(self, storage: RegistryStorage, upload_id: str, name: str) -> None:
        self.storage = storage
        self.id = upload_id
        self.name = name
        self.dir = storage.uploads_dir / upload_id
        self.data_path = self.dir / "data"
        try:
            info = json.loads((self.dir / "info").read_bytes())
            self.fd = os.open(self.data_path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise UploadUnknown(upload_id) from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        if info.get("name") != name or not os.path.exists(self.data_path):
            os.close(self.fd)
            raise UploadUnknown(upload_id)
        self.algorithm: str = info.get("algorithm", digests.CANONICAL)
        self.size = os.fstat(self.fd).st_size

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _state(self) -> _HashState | None:
        state = self.storage._hash_states.get(self.id)
        if state is not None and state.hasher.size == self.size:
            return state
        return None

    def append(self, body: BinaryIO | None, start: int | None = None) -> int:
        """Append `body` to the session; a `start` other than the current size is a
        UploadRangeError. Returns the new size."""
        if start is not None and start != self.size:
            raise UploadRangeError(self.size)
        if body is None:
            return self.size
        state = self._state()
        if state is None and self.size == 0:
            state = _HashState(digests.Hasher(self.algorithm))
        os.lseek(self.fd, self.size, os.SEEK_SET)
        try:
            while True:
                chunk = body.read(_CHUNK)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
                if state is not None:
                    state.hasher.update(chunk)
                self.size += len(chunk)
        except BaseException:
            # A broken body leaves the bytes that did arrive (resumable), but
            # the in-memory hash is only trusted if it matches the file.
            self.size = os.fstat(self.fd).st_size
            raise
        finally:
            if state is not None:
                self.storage._hash_states[self.id] = state
        return self.size

    def digest(self, alg: str) -> str:
        state = self._state()
        if state is not None and state.hasher.algorithm == alg:
            return state.hasher.digest()
        hasher = digests.Hasher(alg)
        os.lseek(self.fd, 0, os.SEEK_SET)
        while True:
            chunk = os.read(self.fd, _CHUNK)
            if not chunk:
                break
            hasher.update(chunk)
        return hasher.digest()

    def commit(self, expected: str) -> bool:
        """Verify the data against `expected` and move it into the blob store.
        Returns False (and cancels the session) on a mismatch."""
        alg, hex_ = digests.parse(expected)
        actual = self.digest(alg)
        if actual != expected:
            self.storage.cancel_upload_dir(self.id)
            return False
        target = self.storage.content.blobs_dir / alg / hex_
        if not target.is_file():
            os.fsync(self.fd)
            os.fchmod(self.fd, 0o444)
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.rename(self.data_path, target)
            fsync_dir(target.parent)
        self.storage.link_blob(self.name, expected)
        self.storage.cancel_upload_dir(self.id)
        return True


class RegistryStorage:
    """Repositories, tags, manifests, referrers and upload sessions under `root`."""

    def __init__(self, root: Path | str, *, upload_ttl: float = UPLOAD_TTL_SECONDS) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.root / "content")
        self.repos_dir = self.root / "repositories"
        self.uploads_dir = self.root / "uploads"
        self.repos_dir.mkdir(exist_ok=True)
        self.uploads_dir.mkdir(mode=0o700, exist_ok=True)
        self._hash_states: dict[str, _HashState] = {}
        self._lock = threading.Lock()
        self.purge_uploads(upload_ttl)

    # -- paths ---------------------------------------------------------------

    def repo_dir(self, name: str) -> Path:
        routes.check_name(name)
        return self.repos_dir.joinpath(*name.split("/"))

    def _layer_link(self, name: str, digest: str) -> Path:
        alg, hex_ = digests.parse(digest)
        return self.repo_dir(name) / "_layers" / alg / hex_

    def _revision(self, name: str, digest: str) -> Path:
        alg, hex_ = digests.parse(digest)
        return self.repo_dir(name) / "_manifests" / "revisions" / alg / hex_

    def _tag_path(self, name: str, tag: str) -> Path:
        routes.check_tag(tag)
        return self.repo_dir(name) / "_manifests" / "tags" / tag

    def _referrers_dir(self, name: str, subject: str) -> Path:
        alg, hex_ = digests.parse(subject)
        return self.repo_dir(name) / "_referrers" / alg / hex_

    def repo_exists(self, name: str) -> bool:
        base = self.repo_dir(name)
        return (base / "_manifests").is_dir() or (base / "_layers").is_dir()

    # -- blobs ---------------------------------------------------------------

    def blob_linked(self, name: str, digest: str) -> bool:
        return self._layer_link(name, digest).exists() and self.content.exists(digest)

    def blob_path(self, name: str, digest: str) -> Path | None:
        """The blob's file if `digest` is in repository `name`, else None."""
        if not self._layer_link(name, digest).exists():
            return None
        try:
            return self.content.path(digest)
        except BlobNotFound:
            return None

    def link_blob(self, name: str, digest: str) -> None:
        link = self._layer_link(name, digest)
        if not link.exists():
            write_atomic(link, b"")

    def unlink_blob(self, name: str, digest: str) -> bool:
        return _unlink(self._layer_link(name, digest))

    def put_blob(self, name: str, body: BinaryIO, expected: str, size: int | None) -> None:
        """Monolithic upload: ingest (verified) and link. DigestMismatch on a bad body."""
        self.content.ingest(body, expected, size)
        self.link_blob(name, expected)

    def mount_blob(self, name: str, digest: str, source: str | None) -> bool:
        if source is not None:
            if not routes.is_valid_name(source) or not self.blob_linked(source, digest):
                return False
        elif not self.content.exists(digest):
            return False
        self.link_blob(name, digest)
        return True

    # -- uploads -------------------------------------------------------------

    def start_upload(self, name: str, algorithm: str = digests.CANONICAL) -> str:
        upload_id = os.urandom(16).hex()
        directory = self.uploads_dir / upload_id
        directory.mkdir(mode=0o700)
        (directory / "data").touch(mode=0o600)
        write_atomic(directory / "info", json.dumps(
            {"name": name, "algorithm": algorithm, "started": time.time()}).encode())
        self._hash_states[upload_id] = _HashState(digests.Hasher(algorithm))
        return upload_id

    def open_upload(self, name: str, upload_id: str) -> Upload:
        """The session, locked; UploadUnknown if it does not exist in `name`."""
        if not routes.UPLOAD_ID_RE.fullmatch(upload_id):
            raise UploadUnknown(upload_id)
        return Upload(self, upload_id, name)

    def cancel_upload_dir(self, upload_id: str) -> None:
        self._hash_states.pop(upload_id, None)
        shutil.rmtree(self.uploads_dir / upload_id, ignore_errors=True)

    def purge_uploads(self, older_than: float) -> list[str]:
        removed = []
        now = time.time()
        for entry in list(os.scandir(self.uploads_dir)):
            try:
                age = now - os.stat(os.path.join(entry.path, "data")).st_mtime
            except FileNotFoundError:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            if age >= older_than:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
        return removed

    # -- manifests and tags ----------------------------------------------------

    def manifest_media_type(self, name: str, digest: str) -> str | None:
        try:
            return self._revision(name, digest).read_text() or None
        except FileNotFoundError:
            return None

    def has_manifest(self, name: str, digest: str) -> bool:
        return self._revision(name, digest).exists() and self.content.exists(digest)

    def resolve_tag(self, name: str, tag: str) -> str | None:
        try:
            value = self._tag_path(name, tag).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return value if digests.is_valid(value) else None

    def read_manifest(self, name: str, digest: str) -> tuple[str, Path] | None:
        """(media type, file) of a manifest in `name`, or None."""
        media_type = self.manifest_media_type(name, digest)
        if media_type is None:
            return None
        try:
            return media_type, self.content.path(digest)
        except BlobNotFound:
            return None

    def put_manifest(self, name: str, data: bytes, digest: str, media_type: str,
                     tags: list[str], referrer_of: tuple[str, dict] | None) -> None:
        self.content.write_bytes(data, digest)
        write_atomic(self._revision(name, digest), media_type.encode())
        if referrer_of is not None:
            subject, descriptor = referrer_of
            alg, hex_ = digests.parse(digest)
            write_atomic(self._referrers_dir(name, subject) / f"{alg}-{hex_}",
                         json.dumps(descriptor, separators=(",", ":")).encode())
        for tag in tags:
            write_atomic(self._tag_path(name, tag), digest.encode())

    def tags(self, name: str) -> list[str] | None:
        """Sorted ("ASCIIbetical") tags, or None if the repository does not exist."""
        if not self.repo_exists(name):
            return None
        try:
            names = os.listdir(self.repo_dir(name) / "_manifests" / "tags")
        except FileNotFoundError:
            return []
        return sorted(t for t in names if routes.is_valid_tag(t))

    def delete_tag(self, name: str, tag: str) -> bool:
        return _unlink(self._tag_path(name, tag))

    def delete_manifest(self, name: str, digest: str) -> bool:
        """Remove the manifest from `name`, with its tags and its referrer entry."""
        path = self._revision(name, digest)
        if not path.exists():
            return False
        subject = None
        with contextlib.suppress(BlobNotFound, ValueError, OSError):
            doc = json.loads(self.content.read_bytes(digest, max_size=4 << 20))
            subject = doc.get("subject", {}).get("digest") if isinstance(doc, dict) else None
        for tag in self.tags(name) or []:
            if self.resolve_tag(name, tag) == digest:
                self.delete_tag(name, tag)
        if isinstance(subject, str) and digests.is_valid(subject):
            alg, hex_ = digests.parse(digest)
            _unlink(self._referrers_dir(name, subject) / f"{alg}-{hex_}")
        return _unlink(path)

    def referrers(self, name: str, subject: str) -> list[dict]:
        directory = self._referrers_dir(name, subject)
        try:
            entries = sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for entry in entries:
            if entry.startswith("."):
                continue
            try:
                descriptor = json.loads((directory / entry).read_bytes())
            except (FileNotFoundError, ValueError):
                continue
            if self.has_manifest(name, descriptor.get("digest", "")):
                out.append(descriptor)
        return out

    # -- catalog -------------------------------------------------------------

    def repositories(self) -> Iterator[str]:
        """Every repository name, sorted."""
        found = []
        for dirpath, dirnames, _files in os.walk(self.repos_dir):
            here = Path(dirpath)
            if "_manifests" in dirnames or "_layers" in dirnames:
                found.append("/".join(here.relative_to(self.repos_dir).parts))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        yield from sorted(found)
