"""SPDY/3.1 framing of the CRI streaming server (corral.cri.spdy): the dictionary,
header blocks over one zlib context per direction, frames; and a client and server
Connection over a socket pair. (tests/interop checks it against Go's spdystream.)"""

from __future__ import annotations

import io
import socket
import zlib

from corral.cri import spdy


def test_dictionary_is_spdy3s():
    # the id a SPDY/3 peer expects (zlib checks it: a wrong one fails to inflate)
    assert len(spdy.DICTIONARY) == 1423 and zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def test_header_blocks_share_one_context_per_direction():
    sender, receiver = spdy.HeaderCodec(), spdy.HeaderCodec()
    # what a receiver decodes is its peer's compressor's output, in order
    receiver._in = zlib.decompressobj(zdict=spdy.DICTIONARY)
    first = sender.encode({"streamtype": ["stdout"], "Port": ["8080"]})
    second = sender.encode({"streamtype": ["stdout"]})
    assert receiver.decode(first) == {"streamtype": ["stdout"], "port": ["8080"]}
    assert receiver.decode(second) == {"streamtype": ["stdout"]}
    assert len(second) < len(first)  # the context remembers


def test_frames_round_trip():
    wire = io.BytesIO(spdy.control(spdy.PING, 0, b"\0\0\0\x07")
                      + spdy.data(5, b"hello", fin=True))
    assert spdy.read_frame(wire) == (True, spdy.PING, 0, b"\0\0\0\x07")
    assert spdy.read_frame(wire) == (False, 5, spdy.FLAG_FIN, b"hello")
    assert spdy.read_frame(wire) is None


def test_connection_streams_over_a_socket_pair():
    a, b = socket.socketpair()
    client = spdy.Connection(a, a.makefile("rb"), client=True)
    server = spdy.Connection(b, b.makefile("rb"))
    try:
        stream = client.open({"streamtype": ["stdin"]})
        accepted = server.accept(timeout=5)
        assert accepted is not None and accepted.header("streamtype") == "stdin"
        accepted.reply()
        assert stream.replied.wait(5) and stream.id == 1
        stream.write(b"x" * 40000)
        stream.close()
        got = b""
        while chunk := accepted.read(timeout=5):
            got += chunk
        assert got == b"x" * 40000
        accepted.write(b"back")
        accepted.close()
        assert stream.read(timeout=5) == b"back" and stream.read(timeout=5) == b""
    finally:
        client.close()
        server.close()
        a.close()
        b.close()
