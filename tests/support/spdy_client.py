"""A minimal SPDY/3.1 client of Kubernetes' streaming protocols (remotecommand exec/
attach with v4.channel.k8s.io, portforward.k8s.io), as kubelet's proxy and crictl
talk to a CRI streaming server: HTTP upgrade, then one SPDY stream per purpose
(`streamtype` header). Framing from corral.cri.spdy; the CRI tests run it against
containerd's streaming server too, so the framing is checked against Go's."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

from corral.cri import spdy


def upgrade(url: str, protocols: list[str], timeout: float = 20) -> tuple[spdy.Connection, str]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: Upgrade\r\n"
               "Upgrade: SPDY/3.1\r\n"
               + "".join(f"X-Stream-Protocol-Version: {p}\r\n" for p in protocols)
               + "Content-Length: 0\r\n\r\n")
    sock.sendall(request.encode())
    rfile = sock.makefile("rb")
    status = rfile.readline().decode()
    headers = {}
    while True:
        line = rfile.readline().decode().strip()
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if " 101 " not in status:
        sock.close()
        raise ConnectionError(f"upgrade refused: {status.strip()} {headers}")
    sock.settimeout(None)
    return spdy.Connection(sock, rfile, client=True), headers.get("x-stream-protocol-version", "")


def _drain(stream: spdy.Stream, out: dict, key: str) -> None:
    chunks = []
    while True:
        chunk = stream.read(timeout=30)
        if not chunk:
            break
        chunks.append(chunk)
    out[key] = b"".join(chunks)


def remotecommand(url: str, *, stdin: bytes | None = None, stdout: bool = True,
                  stderr: bool = True, tty: bool = False,
                  resize: tuple[int, int] | None = None) -> dict:
    """Exec or attach through `url`: {"protocol", "stdout", "stderr", "error"}."""
    conn, protocol = upgrade(url, ["v4.channel.k8s.io", "v3.channel.k8s.io",
                                   "v2.channel.k8s.io", "channel.k8s.io"])
    streams = {"error": conn.open({"streamtype": ["error"]})}
    if stdin is not None:
        streams["stdin"] = conn.open({"streamtype": ["stdin"]})
    if stdout:
        streams["stdout"] = conn.open({"streamtype": ["stdout"]})
    if stderr and not tty:
        streams["stderr"] = conn.open({"streamtype": ["stderr"]})
    if tty:
        streams["resize"] = conn.open({"streamtype": ["resize"]})
    for s in streams.values():
        if not s.replied.wait(20):
            raise TimeoutError(f"no reply to the {s.header('streamtype')} stream")
    out: dict = {"protocol": protocol}
    readers = [threading.Thread(target=_drain, args=(streams[k], out, k))
               for k in ("stdout", "stderr", "error") if k in streams]
    for t in readers:
        t.start()
    if resize is not None and "resize" in streams:
        import json
        import time

        streams["resize"].write(json.dumps({"Width": resize[1], "Height": resize[0]}).encode()
                                + b"\n")
        time.sleep(0.2)  # applied before stdin comes (separate streams, no order)
    if stdin is not None:
        streams["stdin"].write(stdin)
        streams["stdin"].close()
    for t in readers:
        t.join(60)
    conn.close()
    return out


def portforward(url: str, port: int, request: bytes) -> dict:
    """One forwarded connection: {"data": what came back, "error": the error stream}."""
    conn, protocol = upgrade(url, ["portforward.k8s.io"])
    base = {"port": [str(port)], "requestid": ["0"]}
    error = conn.open({"streamtype": ["error"], **base})
    stream = conn.open({"streamtype": ["data"], **base})
    for s in (error, stream):
        if not s.replied.wait(20):
            raise TimeoutError("no reply to a port-forward stream")
    error.close()
    out: dict = {"protocol": protocol}
    t = threading.Thread(target=_drain, args=(error, out, "error"))
    t.start()
    stream.write(request)
    _drain(stream, out, "data")
    conn.close()
    t.join(5)
    return out
