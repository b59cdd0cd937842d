"""Compressed layer streams: sniff gzip / zstd / plain tar and decompress lazily.

OCI image-spec layer.md media types `...tar`, `...tar+gzip`, `...tar+zstd`.
The layer's media type is not trusted: the first bytes decide (gzip magic
1f 8b, zstd frame magic 28 b5 2f fd, anything else is read as plain tar).
gzip goes through ISA-L's C reader, zstd through `zstandard`'s streaming
reader; both are imported only when a layer needs them.

With `threads` > 0 (the default) the decompressor runs on a worker thread
(`Pipeline`) that also hashes what it produces (sha256: the layer's diff id,
`output_digest()`), handing 1 MiB blocks to the reader through a short queue:
ISA-L and hashlib release the GIL, so decompressing and hashing overlap with
the extraction's file writes, and a block is passed on without a copy.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
READ_SIZE = 1 << 20


class _Prefixed(io.RawIOBase):
    """A read-only stream that yields `prefix` and then the rest of `raw`."""

    def __init__(self, prefix: bytes, raw: BinaryIO) -> None:
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._raw.read(len(b))
        if not data:
            return 0
        b[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size < 0:
                out = self._prefix + self._raw.read()
                self._prefix = b""
                return out
            out = self._prefix[:size]
            self._prefix = self._prefix[size:]
            return out
        return self._raw.read(size)


def _peek(stream: BinaryIO, n: int) -> tuple[bytes, BinaryIO]:
    peek = getattr(stream, "peek", None)
    if peek is not None:
        try:
            head = peek(n)[:n]
            if len(head) >= n:
                return head, stream
        except (OSError, ValueError):
            pass
    head = b""
    while len(head) < n:
        chunk = stream.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head, _Prefixed(head, stream)  # type: ignore[return-value]


def sniff(head: bytes) -> str:
    """"gzip", "zstd" or "tar" from a stream's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "tar"


def open_layer(stream: BinaryIO, *, threads: int = 1) -> BinaryIO:
    """The uncompressed tar stream of a (gzip, zstd or plain) layer stream.

    `threads` > 0 decompresses (and hashes) on a worker thread: a `Pipeline`,
    whose `output_digest()` is the sha256 of the whole output once read to
    the end. 0 decompresses in the caller's thread.
    """
    head, stream = _peek(stream, 4)
    kind = sniff(head)
    if threads > 0:
        return Pipeline(functools.partial(_reader, kind, stream),  # type: ignore[return-value]
                        source=stream)
    return _reader(kind, stream, threaded=False)


def _reader(kind: str, stream: BinaryIO, threaded: bool = True) -> Any:
    """A `read(n)` object giving the uncompressed bytes of `stream`."""
    if kind == "gzip":
        from isal import igzip

        if threaded:
            # the C reader (what isal's own threaded reader uses): read() returns
            # fresh bytes and releases the GIL while inflating
            return igzip._IGzipReader(stream, buffersize=4 * READ_SIZE)  # type: ignore[attr-defined]
        return igzip.IGzipFile(fileobj=stream, mode="rb")
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(
            stream, read_size=READ_SIZE, read_across_frames=True
        )
    return stream


class Pipeline(io.RawIOBase):
    """Bytes made by `make()`'s reader on a worker thread, hashed there (see the module doc)."""

    QUEUE = 4

    def __init__(self, make: Callable[[], Any], source: Any = None) -> None:
        import hashlib
        import queue

        super().__init__()
        self._make = make
        self._source = source     # its cancel(), if any, unblocks the worker on close
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes] = queue.Queue(self.QUEUE)
        self._error: BaseException | None = None
        self._stop = False
        self._eof = False
        self._block = b""
        self._pos = 0
        self._done = False
        self._worker = threading.Thread(target=self._run, name="corral-inflate", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        try:
            reader = self._make()
            update = self._hash.update
            while not self._stop:
                data = reader.read(READ_SIZE)
                if not data:
                    self._done = True
                    break
                data = bytes(data)
                update(data)
                if not self._put(data):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self._error = exc
        self._put(b"")

    def _put(self, data: bytes) -> bool:
        import queue

        while not self._stop:
            try:
                self._queue.put(data, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self.read(READ_SIZE):
                parts.append(chunk)
            return b"".join(parts)
        if self._pos >= len(self._block):
            if self._eof:
                return b""
            self._block = self._queue.get()
            self._pos = 0
            if not self._block:
                self._eof = True
                if self._error is not None:
                    raise self._error
                return b""
        block, pos = self._block, self._pos
        if pos == 0 and size >= len(block):
            self._pos = len(block)
            return block
        out = block[pos:pos + size]
        self._pos = pos + len(out)
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def output_digest(self) -> str:
        """sha256 of everything decompressed (final once read() returned b"")."""
        if not self._eof or not self._done:
            raise ValueError("output_digest() before the end of the stream")
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        """Stop the worker: at once when it waits to hand over a block or its
        source can be cancelled (a download's follower); else it is left to end
        by itself (a daemon)."""
        if not self.closed:
            self._stop = True
            cancel = getattr(self._source, "cancel", None)
            if cancel is not None and self._worker.is_alive():
                cancel()
            self._worker.join(timeout=1.0)
        super().close()
