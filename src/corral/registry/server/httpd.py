"""The HTTP/1.1 edge: the standard library's ThreadingHTTPServer with a handler
that does what the distribution API needs from HTTP:

- keep-alive (HTTP/1.1; a request whose body was not fully read closes the
  connection rather than desynchronizing it);
- request bodies by Content-Length or `Transfer-Encoding: chunked` (Go clients
  — podman, skopeo — stream PATCH bodies chunked), read incrementally;
- `Expect: 100-continue` (http.server answers it);
- HEAD (headers and Content-Length, no body), Range (in `app`), blobs sent
  with sendfile(2) on plain sockets;
- TCP_NODELAY and small bodies written with their headers (no Nagle stalls);
- optional TLS: the handshake runs in the connection's thread, not in accept().

Why not a framework: the API is fifteen routes over files, the standard
library covers HTTP/1.1 correctly once chunked request bodies are decoded,
and it keeps the registry free of dependencies (bcrypt only for htpasswd).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from corral.errors import InvalidArgument
from corral.registry.server.app import (
    API_VERSION_HEADER,
    Registry,
    Request,
    Response,
    error_response,
)
from corral.registry.server.auth import Authenticator
from corral.registry.server.errors import RegistryError
from corral.registry.server.storage import UPLOAD_TTL_SECONDS, RegistryStorage
from corral.registry.server.token import TokenAuth

log = logging.getLogger("corral.registry.server")

_DRAIN_MAX = 8 << 20
_LINE_MAX = 4096
_SMALL_BODY = 64 << 10
#: Idle keep-alive connections and stalled transfers are dropped after this.
SOCKET_TIMEOUT = 300.0
PURGE_INTERVAL = 3600.0


class BodyError(Exception):
    """The request body is malformed (bad chunk framing) or ended early."""


class LengthBody:
    """Exactly `length` bytes of the connection."""

    def __init__(self, rfile: Any, length: int) -> None:
        self._rfile = rfile
        self.remaining = length

    @property
    def exhausted(self) -> bool:
        return self.remaining == 0

    def read(self, n: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        if n < 0 or n > self.remaining:
            n = self.remaining
        data = self._rfile.read(n)
        if not data:
            raise BodyError("the client closed the connection in the middle of the body")
        self.remaining -= len(data)
        return data


class ChunkedBody:
    """A `Transfer-Encoding: chunked` body, decoded (RFC 9112 section 7.1)."""

    def __init__(self, rfile: Any) -> None:
        self._rfile = rfile
        self._left = 0
        self.exhausted = False

    def _line(self) -> bytes:
        line = self._rfile.readline(_LINE_MAX + 1)
        if not line.endswith(b"\n") or len(line) > _LINE_MAX:
            raise BodyError("bad chunk framing")
        return line.rstrip(b"\r\n")

    def read(self, n: int = -1) -> bytes:
        if self.exhausted:
            return b""
        if self._left == 0:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                self._left = int(size_text, 16)
            except ValueError:
                raise BodyError(f"bad chunk size {size_text[:20]!r}") from None
            if self._left < 0:
                raise BodyError("bad chunk size")
            if self._left == 0:
                while self._line():  # trailers
                    pass
                self.exhausted = True
                return b""
        want = self._left if n < 0 else min(n, self._left)
        data = self._rfile.read(want)
        if not data:
            raise BodyError("the client closed the connection in the middle of a chunk")
        self._left -= len(data)
        if self._left == 0 and self._rfile.read(2) not in (b"\r\n",):
            raise BodyError("bad chunk framing (no CRLF after the data)")
        return data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "corral-registry"
    sys_version = ""
    server: RegistryHTTPServer

    def setup(self) -> None:
        sock = self.request
        sock.settimeout(SOCKET_TIMEOUT)
        if isinstance(sock, ssl.SSLSocket):
            sock.do_handshake()
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as exc:
            log.debug("connection from %s: %s", self.client_address, exc)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.access_log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        body: LengthBody | ChunkedBody | None = None
        bad: RegistryError | None = None
        encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        if encoding:
            if encoding != "chunked":
                bad = RegistryError("UNSUPPORTED", f"Transfer-Encoding {encoding!r}",
                                    status=501)
            else:
                body = ChunkedBody(self.rfile)
        elif self.headers.get("Content-Length") is not None:
            try:
                length = int(self.headers["Content-Length"])
                if length < 0:
                    raise ValueError
            except ValueError:
                bad = RegistryError("SIZE_INVALID", "bad Content-Length")
            else:
                body = LengthBody(self.rfile, length)
        if bad is not None:
            self.close_connection = True
            self._send(error_response(bad))
            return
        request = Request(self.command, path, query, self.headers,  # type: ignore[arg-type]
                          body)  # type: ignore[arg-type]
        try:
            response = self.server.registry.handle(request)
        except BodyError as exc:
            self.close_connection = True
            response = error_response(RegistryError("BLOB_UPLOAD_INVALID", str(exc)))
            response.headers.append(API_VERSION_HEADER)
        except Exception:  # the edge: a 500, the server goes on
            log.exception("%s %s", self.command, self.path)
            self.close_connection = True
            response = error_response(RegistryError("UNSUPPORTED", "internal server error",
                                                    status=500))
        if body is not None and not body.exhausted:
            self._drain(body)
        self._send(response)

    def _drain(self, body: LengthBody | ChunkedBody) -> None:
        """Read an unread body if it is small, else close the connection after replying."""
        if isinstance(body, LengthBody) and body.remaining > _DRAIN_MAX:
            self.close_connection = True
            return
        total = 0
        try:
            while not body.exhausted:
                chunk = body.read(64 << 10)
                total += len(chunk)
                if total > _DRAIN_MAX or (not chunk and not body.exhausted):
                    self.close_connection = True
                    return
        except (BodyError, OSError):
            self.close_connection = True

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for key, value in response.headers:
            if key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(response.content_length))
        if self.close_connection:
            self.send_header("Connection", "close")
        head_only = self.command == "HEAD"
        if response.file is None and not head_only and 0 < len(response.body) <= _SMALL_BODY:
            # One write for headers and a small body.
            buffer: list[bytes] = self._headers_buffer  # type: ignore[has-type,attr-defined]
            buffer.append(b"\r\n")
            buffer.append(response.body)
            self.wfile.write(b"".join(buffer))
            buffer.clear()
            return
        self.end_headers()
        if head_only:
            return
        if response.file is not None:
            self._send_file(response)
        elif response.body:
            self.wfile.write(response.body)

    def _send_file(self, response: Response) -> None:
        assert response.file is not None
        spec = response.file
        with open(spec.path, "rb") as f:
            if isinstance(self.connection, ssl.SSLSocket):
                f.seek(spec.offset)
                left = spec.length
                while left > 0:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        raise ConnectionError(f"{spec.path} shrank while being sent")
                    self.wfile.write(chunk)
                    left -= len(chunk)
            else:
                self.connection.sendfile(f, spec.offset, spec.length)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class RegistryHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], registry: Registry, *,
                 tls: ssl.SSLContext | None = None, access_log: bool = False) -> None:
        self.registry = registry
        self.access_log = access_log
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("error on a connection from %s", client_address)


def parse_addr(addr: str, default_port: int = 5000) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (loopback), `[v6]:PORT`, `HOST` -> (host, port)."""
    text = addr.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:  # a bare IPv6 address
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    host = host or "127.0.0.1"
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise InvalidArgument(f"--addr: bad port in {addr!r}") from None
    if not 0 <= port <= 65535:
        raise InvalidArgument(f"--addr: port out of range in {addr!r}")
    return host, port


def tls_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"TLS certificate {cert} / key {key}: {exc}") from None
    return ctx


class RegistryServer:
    """A registry on `addr` serving `root`; `start()` runs it in a thread, `close()` stops it."""

    def __init__(self, root: Path | str, addr: str | tuple[str, int] = "127.0.0.1:5000", *,
                 auth: Authenticator | TokenAuth | None = None, tls: ssl.SSLContext | None = None,
                 access_log: bool = False) -> None:
        address = parse_addr(addr) if isinstance(addr, str) else addr
        self.storage = RegistryStorage(root)
        self.registry = Registry(self.storage, auth)
        self.httpd = RegistryHTTPServer(address, self.registry, tls=tls, access_log=access_log)
        self.tls = tls is not None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._janitor = threading.Thread(target=self._purge_loop, name="corral-registry-janitor",
                                         daemon=True)
        self._janitor.start()

    def _purge_loop(self) -> None:
        """Abandoned upload sessions go after UPLOAD_TTL_SECONDS (checked hourly)."""
        while not self._stop.wait(PURGE_INTERVAL):
            try:
                self.storage.purge_uploads(UPLOAD_TTL_SECONDS)
            except OSError:  # pragma: no cover - a vanished root
                log.warning("could not purge old uploads under %s", self.storage.uploads_dir)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="corral-registry",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
