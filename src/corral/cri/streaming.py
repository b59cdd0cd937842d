"""The CRI streaming server: Exec, Attach and PortForward return a one-time URL on this
HTTP server; the client (kubelet's proxy, crictl) upgrades it to a WebSocket speaking
Kubernetes' channel protocol, or to SPDY/3.1 (`corral.cri.spdy`) with one stream per
purpose (`streamtype` error/stdin/stdout/stderr/resize; port-forward: data/error pairs
per `requestid`), protocol by X-Stream-Protocol-Version. Both feed the same exec,
attach and port-forward code through the channel interface (`send_channel`,
`receive`, `close`).

- Exec/Attach: `v4.channel.k8s.io` (or `channel.k8s.io`): every binary message starts
  with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize (JSON
  {"Width","Height"}). With v4 the error channel carries a metav1.Status at the end:
  Success, or Failure/NonZeroExitCode with the exit code as the ExitCode cause.
- PortForward: `v4.channel.k8s.io` (or `portforward.k8s.io`): two channels per
  requested port (data 2i, error 2i+1), each opened by the server with the port as
  2 little-endian bytes; data goes to 127.0.0.1:port in the pod's network namespace.

URLs expire after a minute unused and work once (kubelet's streaming server does the
same). The WebSocket framing (RFC 6455) is implemented here:
server frames unmasked, client frames masked, fragments joined, ping answered.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import secrets
import socket
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from corral.errors import InvalidArgument

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io")
PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")
TOKEN_TTL = 60.0
CLONE_NEWNET = 0x40000000


class WebSocket:
    """RFC 6455 over a connected socket, server side; `send` is thread-safe."""

    def __init__(self, sock: socket.socket, rfile: Any) -> None:
        self.sock, self.rfile = sock, rfile
        self._send_lock = threading.Lock()
        self.closed = False

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionError("connection closed")
        return data

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([n])
        elif n < 1 << 16:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        return head + payload

    def send(self, data: bytes, opcode: int = 2) -> None:
        with self._send_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(self._frame(opcode, data))
            except OSError:
                self.closed = True

    def send_channel(self, channel: int, data: bytes) -> None:
        self.send(bytes([channel]) + data)

    def close(self, code: int = 1000) -> None:
        self.send(struct.pack("!H", code), opcode=8)
        with self._send_lock:
            self.closed = True

    def receive(self) -> bytes | None:
        """The next data message (None: closed)."""
        message = b""
        while True:
            try:
                b1, b2 = self._read(2)
            except (ConnectionError, OSError, ValueError):
                return None
            fin, opcode = b1 & 0x80, b1 & 0x0F
            n = b2 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b2 & 0x80 else None
            payload = self._read(n) if n else b""
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 8:  # close
                self.close()
                return None
            if opcode == 9:  # ping
                self.send(payload, opcode=10)
                continue
            if opcode == 10:
                continue
            message += payload
            if fin:
                return message


class StreamServer:
    """The HTTP server behind the Exec/Attach/PortForward URLs."""

    def __init__(self, engine: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine = engine
        self._pending: dict[str, tuple[str, dict, float]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(_Handler):
            streams = server

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = str(self.httpd.server_address[0]), int(
            self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="cri-streaming")
        self._thread.start()

    def url(self, kind: str, request: dict) -> str:
        token = secrets.token_urlsafe(16)
        now = time.monotonic()
        with self._lock:
            for key in [k for k, v in self._pending.items() if v[2] < now]:
                del self._pending[key]
            self._pending[token] = (kind, request, now + TOKEN_TTL)
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/{kind}/{token}"

    def take(self, kind: str, token: str) -> dict | None:
        with self._lock:
            item = self._pending.pop(token, None)
        if item is None or item[0] != kind or item[2] < time.monotonic():
            return None
        return item[1]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    streams: StreamServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        _, kind, token = (parts.path.split("/") + ["", "", ""])[:3]
        request = self.streams.take(kind, token) if kind in ("exec", "attach",
                                                             "portforward") else None
        if request is None:
            self.send_error(404, "unknown or expired stream")
            return
        if (self.headers.get("Upgrade") or "").lower().startswith("spdy/"):
            self._spdy(kind, request)
            return
        offered = [p.strip() for p in
                   (self.headers.get("Sec-WebSocket-Protocol") or "").split(",") if p.strip()]
        wanted = PORTFORWARD_PROTOCOLS if kind == "portforward" else CHANNEL_PROTOCOLS
        protocol = next((p for p in offered if p in wanted), None)
        key = self.headers.get("Sec-WebSocket-Key")
        if (self.headers.get("Upgrade") or "").lower() != "websocket" or not key:
            self.send_error(400, "expected an upgrade to WebSocket or SPDY/3.1")
            return
        if offered and protocol is None:
            self.send_error(400, f"none of the offered subprotocols is supported: {offered}"
                            f" (supported: {', '.join(wanted)})")
            return
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        if protocol:
            self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        ws = WebSocket(self.connection, self.rfile)
        v4 = protocol == "v4.channel.k8s.io"
        try:
            if kind == "exec":
                _exec(self.streams.engine, ws, request, v4)
            elif kind == "attach":
                _attach(self.streams.engine, ws, request, v4)
            else:
                ports = [int(p) for q in ("port", "ports")
                         for v in parse_qs(parts.query).get(q, []) for p in v.split(",")]
                _portforward(self.streams.engine, ws, request, ports or request["ports"])
        finally:
            ws.close()
            self.close_connection = True

    do_POST = do_GET  # kubectl and crictl POST the SPDY upgrades

    def _spdy(self, kind: str, request: dict) -> None:
        """The SPDY/3.1 flavour: X-Stream-Protocol-Version negotiation, then one SPDY
        stream per purpose, named by its `streamtype` header."""
        from corral.cri import spdy

        offered = [p.strip() for v in self.headers.get_all("X-Stream-Protocol-Version") or []
                   for p in v.split(",") if p.strip()]
        wanted = ("portforward.k8s.io",) if kind == "portforward" else SPDY_PROTOCOLS
        protocol = next((p for p in wanted if p in offered), None)
        if protocol is None:
            self.send_error(403, f"no supported X-Stream-Protocol-Version in {offered} "
                            f"(supported: {', '.join(wanted)})")
            return
        self.send_response(101, "Switching Protocols")
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", "SPDY/3.1")
        self.send_header("X-Stream-Protocol-Version", protocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        conn = spdy.Connection(self.connection, self.rfile)
        try:
            if kind == "portforward":
                _portforward_spdy(self.streams.engine, conn, request)
                return
            channels = SpdyChannels.accept(conn, request, protocol)
            if channels is None:
                return
            v4 = protocol == "v4.channel.k8s.io"
            try:
                if kind == "exec":
                    _exec(self.streams.engine, channels, request, v4)  # type: ignore[arg-type]
                else:
                    _attach(self.streams.engine, channels, request, v4)  # type: ignore[arg-type]
            finally:
                channels.close()
        finally:
            conn.close()


SPDY_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                  "channel.k8s.io")
_STREAM_CHANNELS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR,
                    "resize": RESIZE}


class SpdyChannels:
    """The SPDY streams of one exec/attach behind the WebSocket's channel interface
    (`send_channel`, `receive`, `close`), so both share one implementation."""

    def __init__(self, conn: Any, streams: dict[int, Any]) -> None:
        self.conn, self.streams = conn, streams
        self._messages: queue.Queue[bytes | None] = queue.Queue()
        self.closed = False
        readers = []
        for channel in (STDIN, RESIZE):
            if channel in streams:
                t = threading.Thread(target=self._read, args=(channel,), daemon=True)
                t.start()
                readers.append(t)

        def watch() -> None:
            conn.closed.wait()
            for t in readers:
                t.join(5)
            self._messages.put(None)

        threading.Thread(target=watch, daemon=True).start()

    @classmethod
    def accept(cls, conn: Any, request: dict, protocol: str) -> SpdyChannels | None:
        """Wait (up to 30 s) for the streams the request implies, replying to each."""
        expected = {"error"}
        if request.get("stdin"):
            expected.add("stdin")
        if request.get("stdout"):
            expected.add("stdout")
        if request.get("stderr") and not request.get("tty"):
            expected.add("stderr")
        if request.get("tty") and protocol != "channel.k8s.io" and \
                protocol != "v2.channel.k8s.io":
            expected.add("resize")
        streams: dict[int, Any] = {}
        deadline = time.monotonic() + 30
        while not expected <= {k for k, c in _STREAM_CHANNELS.items() if c in streams}:
            stream = conn.accept(timeout=max(0.0, deadline - time.monotonic()))
            if stream is None:
                return None
            stream.reply()
            channel = _STREAM_CHANNELS.get(stream.header("streamtype"))
            if channel is not None:
                streams[channel] = stream
        return cls(conn, streams)

    def _read(self, channel: int) -> None:
        stream = self.streams[channel]
        while True:
            chunk = stream.read()
            if not chunk:
                if channel == STDIN:
                    self._messages.put(bytes([STDIN]))  # stdin's end
                return
            if channel == RESIZE:
                for line in chunk.splitlines():
                    if line.strip():
                        self._messages.put(bytes([RESIZE]) + line)
            else:
                self._messages.put(bytes([channel]) + chunk)

    def send_channel(self, channel: int, data: bytes) -> None:
        stream = self.streams.get(channel)
        if stream is not None and data:
            stream.write(data)

    def receive(self) -> bytes | None:
        return self._messages.get()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for stream in self.streams.values():
                stream.close()


def _portforward_spdy(engine: Any, conn: Any, request: dict) -> None:
    """portforward.k8s.io: streams come in pairs (`streamtype` data/error, the same
    `requestid` and `port`); each data stream is one connection into the pod."""
    pairs: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def error_stream(rid: str) -> Any:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with lock:
                found = pairs.get(rid, {}).get("error")
            if found is not None:
                return found
            time.sleep(0.01)
        return None

    def forward(rid: str, port: int, stream: Any) -> None:
        try:
            sock = connect_in_netns(request["pid"], port)
        except Exception as exc:  # noqa: BLE001 - reported on the pair's error stream
            err = error_stream(rid)
            if err is not None:
                err.write(f"error forwarding port {port} to pod "
                          f"{request['pod_sandbox_id']}: {exc}".encode())
                err.close()
            stream.close()
            return

        def from_pod() -> None:
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                stream.write(chunk)
            stream.close()

        t = threading.Thread(target=from_pod, daemon=True)
        t.start()
        while True:
            chunk = stream.read()
            if not chunk:
                break
            with contextlib.suppress(OSError):
                sock.sendall(chunk)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        t.join()
        sock.close()
        err = error_stream(rid)
        if err is not None:
            err.close()

    while (stream := conn.accept()) is not None:
        stream.reply()
        rid, kind = stream.header("requestid"), stream.header("streamtype")
        with lock:
            pairs.setdefault(rid, {})[kind] = stream
        if kind == "data":
            try:
                port = int(stream.header("port"))
            except ValueError:
                stream.close()
                continue
            threading.Thread(target=forward, args=(rid, port, stream), daemon=True).start()


def _status(ws: WebSocket, v4: bool, exit_code: int | None, error: str = "",
            cmd: list[str] | None = None) -> None:
    """The error channel's last word: a metav1.Status (v4) or the error text. The
    messages are kubelet's streaming server's (what containerd sends)."""
    if not v4:
        if error or exit_code:
            ws.send_channel(ERROR, (error or "command terminated with non-zero exit code: "
                                    f"error executing command [{' '.join(cmd or [])}], "
                                    f"exit code {exit_code}").encode())
        return
    if error:
        status = {"metadata": {}, "status": "Failure", "message": error,
                  "reason": "InternalError"}
    elif exit_code:
        status = {"metadata": {}, "status": "Failure",
                  "message": "command terminated with non-zero exit code: error executing "
                             f"command [{' '.join(cmd or [])}], exit code {exit_code}",
                  "reason": "NonZeroExitCode",
                  "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}
    else:
        status = {"metadata": {}, "status": "Success"}
    # compact, as Go marshals it
    ws.send_channel(ERROR, json.dumps(status, separators=(",", ":")).encode())


def _resize(data: bytes) -> tuple[int, int] | None:
    try:
        size = json.loads(data)
        return int(size.get("Height") or 0), int(size.get("Width") or 0)
    except (ValueError, AttributeError, TypeError):
        return None


def _pump(read: Any, ws: WebSocket, channel: int) -> None:
    while True:
        try:
            data = read(32768)
        except OSError:
            return
        if not data:
            return
        ws.send_channel(channel, data)


def _exec(engine: Any, ws: WebSocket, request: dict, v4: bool) -> None:
    from corral.engine import attach, conmon
    from corral.storage.records import read_json, write_json

    try:
        c = engine.get(request["container_id"])
        if c.status != "running":
            raise InvalidArgument(f"container {c.id[:12]} is {c.status}, not running")
    except Exception as exc:  # noqa: BLE001 - reported on the error channel
        _status(ws, v4, None, str(exc))
        return
    spec = read_json(c.bundle / "config.json", {})
    process = dict(spec.get("process") or {})
    process["args"] = list(request["cmd"])
    process["terminal"] = bool(request["tty"])
    process.pop("consoleSize", None)
    rt = engine._runtime(c)
    pfile = c.bundle / f"exec-{secrets.token_hex(6)}.json"
    write_json(pfile, process)
    threads: list[threading.Thread] = []
    try:
        if request["tty"]:
            import shutil
            import tempfile

            tmp = tempfile.mkdtemp(prefix="cx-", dir=str(conmon.socket_dir(engine.root)))
            listener = attach.console_listener(os.path.join(tmp, "c"))
            try:
                proc = subprocess.Popen(rt.argv("exec", "--process", str(pfile), "--tty",
                                                "--console-socket", os.path.join(tmp, "c"),
                                                c.id), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                master = attach.receive_console(listener)
            finally:
                listener.close()
                shutil.rmtree(tmp, ignore_errors=True)

            def read_master(n: int) -> bytes:
                try:
                    return os.read(master, n)
                except OSError:  # EIO: the process is gone
                    return b""

            out = threading.Thread(target=_pump, args=(read_master, ws, STDOUT), daemon=True)
            out.start()
            threads.append(out)

            def on_message(channel: int, data: bytes) -> None:
                if channel == STDIN and request["stdin"]:
                    with contextlib.suppress(OSError):
                        os.write(master, data)
                elif channel == RESIZE and (size := _resize(data)):
                    with contextlib.suppress(OSError):
                        attach.set_window_size(master, *size)

            _read_client(ws, proc, on_message)
            proc.wait()
            out.join(5)
            os.close(master)
        else:
            proc = subprocess.Popen(rt.argv("exec", "--process", str(pfile), c.id),
                                    stdin=subprocess.PIPE if request["stdin"]
                                    else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for stream, channel in ((proc.stdout, STDOUT), (proc.stderr, STDERR)):
                t = threading.Thread(target=_pump, args=(stream.read1, ws, channel),  # type: ignore[union-attr]
                                     daemon=True)
                t.start()
                threads.append(t)

            def on_message(channel: int, data: bytes) -> None:
                if channel == STDIN and proc.stdin is not None:
                    try:
                        if data:
                            proc.stdin.write(data)
                            proc.stdin.flush()
                        else:
                            proc.stdin.close()
                    except (OSError, ValueError):
                        pass

            _read_client(ws, proc, on_message)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            proc.wait()
            for t in threads:
                t.join(5)
        _status(ws, v4, proc.returncode, cmd=list(request["cmd"]))
    finally:
        with contextlib.suppress(FileNotFoundError):
            pfile.unlink()


def _read_client(ws: WebSocket, proc: subprocess.Popen, on_message: Any) -> None:
    """Feed client messages to `on_message` until the process exits (or the client
    goes: then the process is killed)."""
    def reader() -> None:
        while True:
            message = ws.receive()
            if message is None:
                if proc.poll() is None:
                    with contextlib.suppress(OSError):
                        proc.kill()
                return
            if message:
                on_message(message[0], message[1:])

    threading.Thread(target=reader, daemon=True).start()
    proc.wait()


def _attach(engine: Any, ws: WebSocket, request: dict, v4: bool) -> None:
    from corral.engine import conmon

    try:
        c = engine.get(request["container_id"])
        if c.status != "running":
            raise InvalidArgument(f"container {c.id[:12]} is {c.status}, not running")
        sock = conmon.attach_socket(conmon.socket_dir(engine.root), c.id)
    except Exception as exc:  # noqa: BLE001 - reported on the error channel
        _status(ws, v4, None, str(exc))
        return

    def client() -> None:
        while True:
            message = ws.receive()
            if message is None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return
            channel, data = message[0], message[1:]
            if channel == STDIN and request["stdin"]:
                with contextlib.suppress(OSError):
                    sock.sendall(data)
            elif channel == RESIZE and (size := _resize(data)):
                engine.resize(c, *size)

    threading.Thread(target=client, daemon=True).start()
    try:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            channel = {conmon.STDOUT: STDOUT, conmon.STDERR: STDERR}.get(data[0])
            if channel is not None and (request["stdout"] if channel == STDOUT
                                        else request["stderr"]):
                ws.send_channel(channel, data[1:])
    finally:
        sock.close()
    _status(ws, v4, None)


def connect_in_netns(pid: int, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:port inside the network namespace of `pid`: the
    socket is made by a thread that setns(2)'d there (a socket keeps the namespace
    it was created in)."""
    from corral.linux import syscalls

    result: dict[str, Any] = {}

    def work() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, CLONE_NEWNET, "pod netns")
            finally:
                os.close(fd)
            result["sock"] = socket.create_connection(("127.0.0.1", port), timeout=10)
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller
            result["error"] = exc
        # the thread ends here, namespace and all

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    sock = result["sock"]
    sock.settimeout(None)
    return sock


def _portforward(engine: Any, ws: WebSocket, request: dict, ports: list[int]) -> None:
    conns: dict[int, socket.socket] = {}
    for index, port in enumerate(ports):
        head = struct.pack("<H", port)
        ws.send_channel(2 * index, head)
        ws.send_channel(2 * index + 1, head)
        try:
            conns[index] = connect_in_netns(request["pid"], port)
        except Exception as exc:  # noqa: BLE001 - reported on the port's error channel
            ws.send_channel(2 * index + 1, f"port {port}: {exc}".encode())
    if not conns:
        return
    done = threading.Event()

    def from_pod(index: int, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            ws.send_channel(2 * index, data)
        done.set()

    for index, conn in conns.items():
        threading.Thread(target=from_pod, args=(index, conn), daemon=True).start()

    def from_client() -> None:
        while True:
            message = ws.receive()
            if message is None:
                break
            channel, data = message[0], message[1:]
            conn = conns.get(channel // 2) if channel % 2 == 0 else None
            if conn is not None and data:
                with contextlib.suppress(OSError):
                    conn.sendall(data)
        done.set()

    threading.Thread(target=from_client, daemon=True).start()
    done.wait()
    for conn in conns.values():
        with contextlib.suppress(OSError):
            conn.close()
