"""Compressed layer streams: sniff gzip / zstd / plain tar and decompress lazily.

OCI image-spec layer.md media types `...tar`, `...tar+gzip`, `...tar+zstd`.
The layer's media type is not trusted: the first bytes decide (gzip magic
1f 8b, zstd frame magic 28 b5 2f fd, anything else is read as plain tar).
gzip goes through ISA-L (`isal.igzip_threaded`: decompression runs on a
second thread, releasing the GIL, so it overlaps with extraction); zstd through
`zstandard`'s streaming reader. Both are imported only when a layer needs them.
"""

from __future__ import annotations

import io
from typing import BinaryIO

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

    `threads` > 0 decompresses gzip on that many background threads (ISA-L's
    threaded reader); 0 decompresses in the caller's thread.
    """
    head, stream = _peek(stream, 4)
    kind = sniff(head)
    if kind == "gzip":
        if threads > 0:
            from isal import igzip_threaded

            return igzip_threaded.open(  # type: ignore[no-any-return]
                stream, "rb", threads=threads, block_size=READ_SIZE
            )
        from isal import igzip

        return igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(  # type: ignore[no-any-return]
            stream, read_size=READ_SIZE, read_across_frames=True
        )
    return stream
