"""The `containers-storage:[NAME]` transport: Corral's own store (corral.storage.Store).

An image in the store is: its config and manifest blobs and every layer blob as
received (compressed or not) in the content store, the layers applied in the
layer store (by chain id), and an image record (id = config digest, names,
manifest digest). Keeping the original layer blobs means a save copies them
byte for byte, so layer digests and the manifest digest survive load -> save.

Destination: blobs are ingested (verified) first; `put_image` then applies the
layers from the content store in order (a chain id already stored is shared
without reading), stores the manifest (the source's OCI bytes when it has them)
and writes the image record. Until commit the layers are held by this process;
`close()` without commit drops the hold (unused layers go) and deletes the blobs
this copy added that no image references, so a failed load leaves the store as
it was.

Remote sources (`set_parallel_blobs(n)`, called by the copy routine for the
registry): `put_layer` only starts the fetch — up to n at once in threads —
and `put_image` applies each layer as its bytes arrive: the fetch writes
the content store's ingest file (a resumable `Writer`) and the layer apply
follows that file with pread, one copy of the bytes on disk. The follower
ends only after the writer verified the blob's size and digest (its fsync and
rename may still run: the image is recorded only after every fetch
committed), and a failed fetch fails the apply (its staging directory goes),
so nothing unverified is ever recorded. Blobs fetched from a registry stay in the content store after
a failed copy (unreferenced: the next pull skips them, `image prune` removes
them); the layers and the image record are rolled back as usual.

A fetch that stops half-way (an error, Ctrl-C, a kill) leaves its partial
ingest file; the next pull of the blob continues from there when the source
can (an opener with `resumable` set takes `offset=`: the registry asks for
the rest with a Range request), and the digest is checked over the whole blob.
"""

from __future__ import annotations

import os
import threading
from typing import Any, BinaryIO, Self

from corral.errors import NotFound
from corral.image.transports.types import Opener, SourceImage, TransportError
from corral.oci import digest as digests
from corral.oci.image import (
    OCI_CONFIG,
    Descriptor,
    Manifest,
    parse_manifest,
)


def normalize_name(text: str) -> str:
    """The normalized name an image gets in the store (`busybox` -> docker.io/library/busybox:latest).

    Stricter than `Reference.parse` like podman: a first component with uppercase
    letters that is not a host (no `.` or `:`) is a repository path, so
    `UPPER/case` is refused ("repository name must be lowercase").
    """
    from corral.oci.reference import InvalidReference, Reference

    first, sep, _rest = text.partition("/")
    if sep and first != first.lower() and "." not in first and ":" not in first:
        raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase")
    return str(Reference.parse(text))


class StoreSource:
    def __init__(self, store: Any, name: str) -> None:
        self.store = store
        self.name = name

    def images(self) -> list[SourceImage]:
        record = self.store.image(self.name)
        content = self.store.content
        if not record.manifest_digest or not content.exists(record.manifest_digest):
            raise TransportError(f"image {record.short_id} has no manifest in the store "
                                 "(it was not made by a load, import or pull)")
        data = content.read_bytes(record.manifest_digest, max_size=16 << 20)
        manifest = parse_manifest(data)
        if not isinstance(manifest, Manifest):
            raise TransportError(f"image {record.short_id}: its manifest is an index")
        config = content.read_bytes(record.id, max_size=16 << 20)
        names = record.names
        try:
            from corral.oci.reference import Reference

            wanted = str(Reference.parse(self.name))
            if wanted in record.names:
                names = (wanted,)
        except Exception:  # noqa: S110, BLE001 - an id, not a name: keep every name
            pass
        return [SourceImage(manifest, config, data, tuple(names))]

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        return self.store.content.open(desc.digest)

    def close(self) -> None:
        pass


class StoreDestination:
    def __init__(self, store: Any, name: str | None = None) -> None:
        self.store = store
        self.name = name
        self.added_blobs: list[str] = []
        self.held_tops: list[str] = []
        self.committed = False
        self.images: list[str] = []
        self.parallel = 1
        self.fetches: dict[str, _Fetch] = {}
        self.pool: Any = None
        self.cancelled = threading.Event()

    def set_parallel_blobs(self, n: int) -> None:
        """Fetch up to `n` layer blobs at once and apply while fetching (see the docstring)."""
        self.parallel = max(1, n)

    def _ingest(self, desc: Descriptor, stream: BinaryIO | None, data: bytes | None) -> None:
        content = self.store.content
        if content.exists(desc.digest):
            return
        if data is not None:
            content.write_bytes(data, desc.digest)
        else:
            content.ingest(stream, desc.digest, desc.size)
        self.added_blobs.append(desc.digest)

    def put_config(self, desc: Descriptor, data: bytes) -> Descriptor:
        self._ingest(desc, None, data)
        return Descriptor(OCI_CONFIG, desc.digest, len(data))

    def put_layer(self, desc: Descriptor, diff_id: str, opener: Opener) -> Descriptor:
        if self.store.content.exists(desc.digest) or desc.digest in self.fetches:
            return desc
        if self.parallel > 1:
            from concurrent.futures import ThreadPoolExecutor

            if self.pool is None:
                self.pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="corral-fetch")
            fetch = _Fetch(self, desc, opener)
            self.fetches[desc.digest] = fetch
            fetch.future = self.pool.submit(fetch.run)
            return desc
        with opener() as stream:
            self._ingest(desc, stream, None)
        return desc

    def _layer_stream(self, desc: Descriptor) -> BinaryIO:
        fetch = self.fetches.get(desc.digest)
        if fetch is not None and not fetch.succeeded():
            return fetch.follower()  # type: ignore[return-value]
        return self.store.content.open(desc.digest)

    def _wait_fetches(self) -> None:
        for fetch in list(self.fetches.values()):
            if fetch.future is not None:
                fetch.future.result()

    def put_image(self, image: SourceImage, config: Descriptor, layers: list[Descriptor],
                  names: tuple[str, ...]) -> str:
        parent = None
        for desc, diff_id in zip(layers, image.config.diff_ids):
            try:
                with self._layer_stream(desc) as blob:
                    record = self.store.put_layer(blob, parent, diff_id=diff_id,
                                                  compressed_digest=desc.digest,
                                                  compressed_size=desc.size)
            except Exception as exc:
                fetch = self.fetches.get(desc.digest)
                cause = fetch.wait() if fetch is not None else None
                if cause is not None and cause is not exc:
                    raise cause from None  # bad bytes fail the apply first; the fetch says why
                raise
            if parent is None or record.id not in self.held_tops:
                self.held_tops.append(record.id)
            parent = record.id
        self._wait_fetches()
        if image.manifest_bytes is not None and list(image.manifest.layers) == layers:
            data = image.manifest_bytes
        else:
            data = Manifest(config, layers, annotations=image.manifest.annotations).to_bytes()
        manifest_digest = digests.of_bytes(data)
        self._ingest(Descriptor("application/octet-stream", manifest_digest, len(data)),
                     None, data)
        if self.name is not None:
            names = (normalize_name(self.name),)

        try:
            self.store.images.get(config.digest)
            existed = True
        except NotFound:
            existed = False
        self.store.create_image(config.digest, parent, names=list(names),
                                manifest_digest=manifest_digest,
                                created=image.config.created or None)
        if not existed:
            self.images.append(config.digest)
        return config.digest

    def commit(self) -> None:
        self.committed = True

    def close(self) -> None:
        if self.pool is not None:
            self.cancelled.set()
            for fetch in list(self.fetches.values()):
                fetch.abort()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            for fetch in self.fetches.values():
                fetch.discard()
        if self.committed:
            return
        from corral.storage import holds

        with self.store.locked():
            for image_id in self.images:
                try:
                    self.store.remove_image(image_id, force=False)
                except Exception:  # noqa: S110, BLE001 - best effort roll-back
                    pass
            for top in reversed(self.held_tops):
                try:
                    self.store.layers.drop_user(top, holds.current())
                except Exception:  # noqa: S110, BLE001
                    pass
            referenced = self.store.referenced_blobs()
            referenced.update(d for d, f in self.fetches.items() if f.succeeded())
            for digest in self.added_blobs:
                if digest not in referenced:
                    try:
                        self.store.content.delete(digest)
                    except Exception:  # noqa: S110, BLE001
                        pass


class FetchCancelled(TransportError):
    """The copy was abandoned while this blob was being fetched."""


class _Fetch:
    """One layer blob: fetched into a resumable content-store writer in a thread."""

    def __init__(self, dest: StoreDestination, desc: Descriptor, opener: Opener) -> None:
        self.dest = dest
        self.desc = desc
        self.opener = opener
        self.future: Any = None
        self.cond = threading.Condition()
        self.fd: int | None = None      # readable: the ingest file, then the blob
        self.stream: Any = None         # the source stream while copying
        self.written = 0
        self.verified = False           # all bytes there and their digest checked
        self.finished = False
        self.error: BaseException | None = None

    def succeeded(self) -> bool:
        with self.cond:
            return self.finished and self.error is None

    def _readable(self, fd: int, written: int) -> None:
        with self.cond:
            self.fd = os.dup(fd)
            self.written = written
            self.cond.notify_all()

    def run(self) -> None:
        try:
            self._fetch()
        except BaseException as exc:
            with self.cond:
                self.error = exc
                self.finished = True
                self.cond.notify_all()
            raise
        with self.cond:
            self.finished = True
            self.cond.notify_all()

    def _fetch(self) -> None:
        content = self.dest.store.content
        desc = self.desc
        try:
            blob = os.open(content.path(desc.digest), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotFound):
            blob = None
        if blob is not None:      # another pull stored it meanwhile
            try:
                self._readable(blob, os.fstat(blob).st_size)
            finally:
                os.close(blob)
            return
        resumable = bool(getattr(self.opener, "resumable", False))
        with content.writer(desc.digest, desc.size, resumable=True) as w:
            if w.offset and not resumable:
                w.restart()
            self._readable(w.fd, w.offset)
            if w.offset < desc.size:    # else all there: killed before the commit
                self._copy(w)
            w.verify()
            with self.cond:             # the apply may end now; the image waits for commit()
                self.verified = True
                self.cond.notify_all()
            w.commit()                  # fsync + rename: off the apply's path
        self.dest.added_blobs.append(desc.digest)

    def _copy(self, w: Any) -> None:
        opener: Any = self.opener
        cancelled = self.dest.cancelled
        with (opener(offset=w.offset) if w.offset else opener()) as stream:
            self.stream = stream
            if cancelled.is_set():      # close() came before the stream: nobody aborts it
                raise FetchCancelled(f"blob {self.desc.digest}: the copy was abandoned")
            while True:
                if cancelled.is_set():
                    raise FetchCancelled(f"blob {self.desc.digest}: the copy was abandoned")
                chunk = stream.read(1 << 20)
                if not chunk:
                    return
                w.write(chunk)
                with self.cond:
                    self.written = w.offset
                    self.cond.notify_all()

    def wait(self) -> BaseException | None:
        """Wait for the fetch to end; its error, if it failed."""
        with self.cond:
            while not self.finished:
                self.cond.wait()
            return self.error

    def follower(self) -> _Follower:
        return _Follower(self)

    def abort(self) -> None:
        """Unblock a copy waiting for the network (the copy was abandoned)."""
        abort = getattr(self.stream, "abort", None)
        if abort is not None and not self.finished:
            abort()

    def discard(self) -> None:
        with self.cond:
            fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class _Follower:
    """Reads a fetch's ingest file as it grows; EOF only once the blob is verified
    (its digest checked; the commit's fsync and rename may still be under way:
    `put_image` waits for every fetch before it records the image)."""

    def __init__(self, fetch: _Fetch) -> None:
        self.fetch = fetch
        self.pos = 0
        self.cancelled = False

    def cancel(self) -> None:
        """Make a waiting (and any later) read fail: the apply was abandoned."""
        with self.fetch.cond:
            self.cancelled = True
            self.fetch.cond.notify_all()

    def _wait(self, want: int = 1) -> tuple[int | None, int]:
        """(fd, bytes available at pos) once `want` bytes are there or the fetch ended."""
        f = self.fetch
        with f.cond:
            while (f.written - self.pos < want or f.fd is None) and not f.finished \
                    and not f.verified and not self.cancelled:
                f.cond.wait()
            if self.cancelled:
                raise FetchCancelled(f"blob {f.desc.digest}: the layer apply was abandoned")
            if f.error is not None and not f.verified:
                raise f.error
            return f.fd, f.written - self.pos

    def read(self, n: int = -1) -> bytes:
        fd, available = self._wait()
        if available <= 0 or fd is None:
            return b""
        want = available if n is None or n < 0 else min(n, available)
        data = os.pread(fd, want, self.pos)
        self.pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        """Straight into the decompressor's buffer (no copy through a bytes object)."""
        fd, available = self._wait()
        if available <= 0 or fd is None:
            return 0
        view = memoryview(b).cast("B")
        got = os.preadv(fd, [view[:min(len(view), available)]], self.pos)
        self.pos += got
        return got

    def peek(self, n: int = 1) -> bytes:
        """Up to `n` bytes ahead without consuming them (the compression sniff)."""
        fd, available = self._wait(max(1, n))
        if available <= 0 or fd is None:
            return b""
        return os.pread(fd, min(n, available), self.pos)

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreReference:
    transport = "containers-storage"

    def __init__(self, store: Any, name: str | None = None) -> None:
        self.store = store
        self.name = name or None

    def open_source(self) -> StoreSource:
        if self.name is None:
            raise TransportError("containers-storage: name an image to read")
        self.store.image(self.name)  # ImageNotFound now
        return StoreSource(self.store, self.name)

    def open_destination(self) -> StoreDestination:
        if self.name is not None:
            normalize_name(self.name)
        return StoreDestination(self.store, self.name)

    def __str__(self) -> str:
        return "containers-storage:" + (self.name or "")
