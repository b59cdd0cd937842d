"""The CRI streaming server's WebSocket layer and URLs (corral.cri.streaming), with a
fake engine: framing (masked client frames, fragments, ping), one-time tokens,
refusals of plain HTTP and unknown subprotocols. No root, no containers."""

from __future__ import annotations

import io
import socket
import struct
import time
import urllib.error
import urllib.request

import pytest

from corral.cri import streaming


def _client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = b"\x01\x02\x03\x04"
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class _Sink:
    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data


def test_receive_unmasks_joins_fragments_and_answers_ping():
    wire = (_client_frame(9, b"hb") + _client_frame(2, b"\x00hel", fin=False)
            + _client_frame(0, b"lo") + _client_frame(2, b"x" * 300) + _client_frame(8, b""))
    sink = _Sink()
    ws = streaming.WebSocket(sink, io.BytesIO(wire))  # type: ignore[arg-type]
    assert ws.receive() == b"\x00hello"
    assert sink.data.startswith(b"\x8a\x02hb")  # pong with the ping's payload
    assert ws.receive() == b"x" * 300
    assert ws.receive() is None and ws.closed


def test_send_frames_unmasked_with_lengths():
    sink = _Sink()
    ws = streaming.WebSocket(sink, io.BytesIO())  # type: ignore[arg-type]
    ws.send_channel(1, b"out")
    ws.send(b"y" * 70000)
    assert sink.data[:6] == b"\x82\x04\x01out"
    assert sink.data[6:8] == b"\x82\x7f" and struct.unpack("!Q", sink.data[8:16])[0] == 70000
    ws.close()
    ws.send(b"after close")  # dropped
    assert sink.data.endswith(b"\x88\x02\x03\xe8")


@pytest.fixture
def server():
    s = streaming.StreamServer(engine=None)
    yield s
    s.close()


def _upgrade(url: str, protocol: str | None = "v4.channel.k8s.io") -> bytes:
    host, port, path = url.split("/")[2].split(":")[0], int(url.split(":")[2].split("/")[0]), \
        "/" + url.split("/", 3)[3]
    with socket.create_connection((host, port), timeout=5) as s:
        headers = (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n")
        if protocol:
            headers += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        s.sendall((headers + "\r\n").encode())
        return s.recv(4096)


def test_urls_are_one_time_and_unknown_ones_404(server):
    url = server.url("exec", {"container_id": "c" * 64, "cmd": ["true"], "tty": False,
                              "stdin": False, "stdout": True, "stderr": True})
    assert url.startswith(f"http://127.0.0.1:{server.port}/exec/")
    with pytest.raises(urllib.error.HTTPError) as info:  # not a WebSocket upgrade
        urllib.request.urlopen(url, timeout=5)
    assert info.value.code == 400
    # the token was spent by that request
    assert _upgrade(url).startswith(b"HTTP/1.1 404")
    assert _upgrade(f"http://127.0.0.1:{server.port}/exec/nope").startswith(b"HTTP/1.1 404")


def test_upgrade_answers_rfc6455_accept_and_refuses_unknown_protocols(server):
    request = {"container_id": "c" * 64, "cmd": ["true"], "tty": False, "stdin": False,
               "stdout": True, "stderr": True}
    reply = _upgrade(server.url("exec", request), protocol="v9.nonsense")
    assert reply.startswith(b"HTTP/1.1 400")
    reply = _upgrade(server.url("exec", request))
    assert reply.startswith(b"HTTP/1.1 101")
    # RFC 6455's example key and accept value
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in reply
    assert b"Sec-WebSocket-Protocol: v4.channel.k8s.io" in reply


def test_tokens_expire(server, monkeypatch):
    url = server.url("attach", {"container_id": "c" * 64})
    monkeypatch.setattr(time, "monotonic", lambda: 1e12)
    assert server.take("attach", url.rsplit("/", 1)[1]) is None
