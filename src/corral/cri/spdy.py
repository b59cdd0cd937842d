"""SPDY/3.1 framing, as Kubernetes' streaming protocols use it (k8s.io/apimachinery
httpstream/spdy over moby/spdystream): what kubelet's proxy and crictl speak to a
CRI streaming server by default.

Only what those peers use: SYN_STREAM/SYN_REPLY with zlib-compressed header blocks
(one zlib stream per direction, seeded with the SPDY/3 dictionary, a sync flush per
block), DATA with FIN, RST_STREAM, PING (echoed), GOAWAY, SETTINGS and WINDOW_UPDATE
(received and ignored; windows are granted back as data is consumed). `Connection`
reads frames in a thread and hands out the peer's streams; `Stream` reads and writes
one of them.
"""

from __future__ import annotations

import contextlib
import queue
import struct
import threading
import zlib
from typing import Any

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9)
FLAG_FIN = 0x01
WINDOW = 64 << 10  # SPDY/3.1's initial window

#: the dictionary's length-prefixed part: common header names and values
_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range",
    "referer", "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
    "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get", "status",
    "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin")
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct"
    " Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft 3, 2.6.10.1): length-prefixed
    header names and values, then a run of common strings."""
    return b"".join(struct.pack("!I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


DICTIONARY = _dictionary()


class HeaderCodec:
    """One direction's zlib context for header blocks."""

    def __init__(self) -> None:
        self._out = zlib.compressobj(zdict=DICTIONARY)
        self._in = zlib.decompressobj(zdict=DICTIONARY)

    def encode(self, headers: dict[str, list[str]]) -> bytes:
        raw = struct.pack("!I", len(headers))
        for name, values in headers.items():
            value = b"\0".join(v.encode() for v in values)
            raw += struct.pack("!I", len(name)) + name.lower().encode()
            raw += struct.pack("!I", len(value)) + value
        return self._out.compress(raw) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, block: bytes) -> dict[str, list[str]]:
        raw = self._in.decompress(block)
        (count,) = struct.unpack_from("!I", raw, 0)
        pos, out = 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from("!I", raw, pos)
            name = raw[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            (n,) = struct.unpack_from("!I", raw, pos)
            value = raw[pos + 4:pos + 4 + n]
            pos += 4 + n
            out[name] = [v.decode() for v in value.split(b"\0")]
        return out


def control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
    return struct.pack("!II", stream_id & 0x7FFFFFFF,
                       ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload


def read_frame(rfile: Any) -> tuple[bool, int, int, bytes] | None:
    """(is control, type or stream id, flags, payload); None at the end."""
    head = rfile.read(8)
    if len(head) < 8:
        return None
    first, second = struct.unpack("!II", head)
    length, flags = second & 0xFFFFFF, second >> 24
    payload = rfile.read(length) if length else b""
    if len(payload) < length:
        return None
    if first & 0x80000000:
        return True, first & 0xFFFF, flags, payload
    return False, first & 0x7FFFFFFF, flags, payload


class Stream:
    """One SPDY stream: `read()` the peer's data (b"" at its FIN), `write`, `close`."""

    def __init__(self, conn: Connection, stream_id: int, headers: dict[str, list[str]]
                 ) -> None:
        self.conn, self.id, self.headers = conn, stream_id, headers
        self._data: queue.Queue[bytes] = queue.Queue()
        self.closed = False  # our side sent FIN
        self.replied = threading.Event()
        self._unacked = 0

    def header(self, name: str) -> str:
        return (self.headers.get(name.lower()) or [""])[0]

    def read(self, timeout: float | None = None) -> bytes:
        try:
            chunk = self._data.get(timeout=timeout)
        except queue.Empty:
            return b""
        self._unacked += len(chunk)
        if self._unacked >= WINDOW // 2:
            self.conn.grant(self.id, self._unacked)
            self._unacked = 0
        return chunk

    def write(self, payload: bytes) -> None:
        for i in range(0, len(payload), 16 << 10):
            self.conn.send(data(self.id, payload[i:i + (16 << 10)]))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.send(data(self.id, b"", fin=True))

    def reply(self, headers: dict[str, list[str]] | None = None) -> None:
        self.conn.send(control(SYN_REPLY, 0, struct.pack("!I", self.id)
                               + self.conn.codec.encode(headers or {})))

    def _remote(self, payload: bytes, fin: bool) -> None:
        if payload:
            self._data.put(payload)
        if fin:
            self._data.put(b"")


class Connection:
    """SPDY over an upgraded socket. Server side: the peer opens the streams
    (`accept()` returns them); client side: `open()` makes them (odd ids)."""

    def __init__(self, sock: Any, rfile: Any, *, client: bool = False) -> None:
        self.sock, self.rfile = sock, rfile
        self.codec = HeaderCodec()
        self.streams: dict[int, Stream] = {}
        self.incoming: queue.Queue[Stream | None] = queue.Queue()
        self._send_lock = threading.Lock()
        self._next_id = 1 if client else 2
        self.closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name="spdy-reader")
        self._reader.start()

    def send(self, frame: bytes) -> None:
        with self._send_lock:
            if self.closed.is_set():
                return
            try:
                self.sock.sendall(frame)
            except OSError:
                self.closed.set()

    def grant(self, stream_id: int, amount: int) -> None:
        for sid in (stream_id, 0):
            self.send(control(WINDOW_UPDATE, 0, struct.pack("!II", sid, amount)))

    def accept(self, timeout: float | None = None) -> Stream | None:
        try:
            return self.incoming.get(timeout=timeout)
        except queue.Empty:
            return None

    def open(self, headers: dict[str, list[str]], fin: bool = False) -> Stream:
        with self._send_lock:
            sid = self._next_id
            self._next_id += 2
        stream = Stream(self, sid, headers)
        self.streams[sid] = stream
        payload = struct.pack("!IIBB", sid, 0, 0, 0) + self.codec.encode(headers)
        self.send(control(SYN_STREAM, FLAG_FIN if fin else 0, payload))
        return stream

    def _read_loop(self) -> None:
        try:
            while True:
                frame = read_frame(self.rfile)
                if frame is None:
                    break
                is_control, kind, flags, payload = frame
                fin = bool(flags & FLAG_FIN)
                if not is_control:
                    stream = self.streams.get(kind)
                    if stream is not None:
                        stream._remote(payload, fin)
                elif kind == SYN_STREAM:
                    sid = struct.unpack_from("!I", payload, 0)[0] & 0x7FFFFFFF
                    stream = Stream(self, sid, self.codec.decode(payload[10:]))
                    self.streams[sid] = stream
                    if fin:
                        stream._remote(b"", True)
                    self.incoming.put(stream)
                elif kind == SYN_REPLY:
                    sid = struct.unpack_from("!I", payload, 0)[0] & 0x7FFFFFFF
                    self.codec.decode(payload[4:])
                    stream = self.streams.get(sid)
                    if stream is not None:
                        stream.replied.set()
                        if fin:
                            stream._remote(b"", True)
                elif kind == HEADERS:
                    self.codec.decode(payload[4:])
                elif kind == RST_STREAM:
                    sid = struct.unpack_from("!I", payload, 0)[0] & 0x7FFFFFFF
                    stream = self.streams.get(sid)
                    if stream is not None:
                        stream._remote(b"", True)
                elif kind == PING:
                    self.send(control(PING, 0, payload))
                elif kind == GOAWAY:
                    break
                # SETTINGS, WINDOW_UPDATE: nothing to do
        except (OSError, ValueError, zlib.error, struct.error):
            pass
        finally:
            self.closed.set()
            for stream in list(self.streams.values()):
                stream._remote(b"", True)
            self.incoming.put(None)

    def close(self) -> None:
        self.send(control(GOAWAY, 0, struct.pack("!II", 0, 0)))
        with contextlib.suppress(OSError):
            self.sock.shutdown(2)
        self.closed.set()
