"""corral.oci.digest: the only road from a string to `blobs/<alg>/<hex>`."""

from __future__ import annotations

import hashlib

import pytest

from corral.errors import InvalidArgument
from corral.oci import digest

EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_SHA512 = ("sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")

GOOD = [
    EMPTY_SHA256,
    EMPTY_SHA512,
    "sha256:" + "0" * 64,
    "sha256:" + "0123456789abcdef" * 4,
]

# (input, a fragment the message must contain)
BAD = [
    ("sha256:../x", "64 hex digits"),
    ("sha256:../../../../etc/passwd" + "a" * 42, "lowercase hex"),
    ("sha256:" + "A" * 64, "lowercase hex"),
    ("sha256:" + "a" * 63, "got 63"),
    ("sha256:" + "a" * 65, "got 65"),
    ("sha512:" + "a" * 64, "128 hex digits"),
    ("sha256:" + "g" * 64, "lowercase hex"),
    ("sha256:" + "a" * 63 + "\n", "lowercase hex"),
    (" sha256:" + "a" * 64, "unsupported algorithm"),
    ("SHA256:" + "a" * 64, "unsupported algorithm"),
    ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported algorithm"),
    ("blake3:" + "a" * 64, "unsupported algorithm"),
    ("sha256" + "a" * 64, "expected <algorithm>:<hex>"),
    ("", "expected <algorithm>:<hex>"),
    ("sha256:", "got 0"),
    ("sha256:" + "a" * 32 + "/" + "a" * 31, "lowercase hex"),
]


@pytest.mark.parametrize("value", GOOD)
def test_parse_accepts(value):
    alg, hex_ = digest.parse(value)
    assert f"{alg}:{hex_}" == value
    assert digest.validate(value) == value
    assert digest.is_valid(value)


@pytest.mark.parametrize(("value", "why"), BAD)
def test_parse_refuses_naming_the_value(value, why):
    with pytest.raises(digest.InvalidDigest) as info:
        digest.parse(value, "manifest.layers[2].digest")
    message = str(info.value)
    assert message.startswith("manifest.layers[2].digest: ")
    assert why in message
    assert repr(value)[:40] in message or len(repr(value)) > 80
    assert isinstance(info.value, InvalidArgument)
    assert not digest.is_valid(value)


@pytest.mark.parametrize("value", [None, 12, b"sha256:" + b"a" * 64, ["sha256:x"]])
def test_parse_refuses_non_strings(value):
    with pytest.raises(digest.InvalidDigest, match="expected a digest string"):
        digest.parse(value)


def test_parts():
    assert digest.algorithm(EMPTY_SHA512) == "sha512"
    assert digest.encoded(EMPTY_SHA256) == EMPTY_SHA256[7:]


def test_of_bytes_known_vectors():
    assert digest.of_bytes(b"") == EMPTY_SHA256
    assert digest.of_bytes(b"", "sha512") == EMPTY_SHA512
    assert digest.of_bytes(b"hello") == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert digest.of_bytes(memoryview(b"hello")) == digest.of_bytes(b"hello")


def test_of_bytes_refuses_unknown_algorithm():
    with pytest.raises(InvalidArgument, match="md5"):
        digest.of_bytes(b"", "md5")
    with pytest.raises(InvalidArgument, match="unsupported"):
        digest.Hasher("sha1")


@pytest.mark.parametrize("alg", ["sha256", "sha512"])
def test_hasher_streams_like_of_bytes(alg):
    data = bytes(range(256)) * 1000
    h = digest.Hasher(alg)
    for start in range(0, len(data), 4093):
        h.update(data[start:start + 4093])
    assert h.digest() == digest.of_bytes(data, alg)
    assert h.size == len(data)
    assert h.algorithm == alg
    assert h.hexdigest() == h.digest().partition(":")[2]


def test_hasher_defaults_to_sha256():
    assert digest.Hasher().digest() == EMPTY_SHA256


def test_verify():
    digest.verify(b"", EMPTY_SHA256)
    digest.verify(b"", EMPTY_SHA512)
    with pytest.raises(digest.DigestMismatch) as info:
        digest.verify(b"x", EMPTY_SHA256, "layer 3")
    assert info.value.expected == EMPTY_SHA256
    assert info.value.actual == digest.of_bytes(b"x")
    assert "layer 3" in str(info.value) and EMPTY_SHA256 in str(info.value)
    assert isinstance(info.value, InvalidArgument)
    with pytest.raises(digest.InvalidDigest):
        digest.verify(b"", "sha256:../x")
