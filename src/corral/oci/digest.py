"""Content digests: `<algorithm>:<hex>` (OCI image-spec descriptor.md#digests).

Only the two algorithms Corral can verify are accepted: `sha256` (64 lowercase
hex digits) and `sha512` (128). The spec lets implementations pass unknown
algorithms through, but a digest here is about to become a file name
(`blobs/<alg>/<hex>`) or be checked against content, so everything else —
`sha256:../x`, uppercase hex, a short hex, `blake3:...`, stray whitespace — is
refused with `InvalidDigest`, naming the string. `parse` is the only way a
digest turns into path components.

Imports only the standard library (the module is part of `corral.oci`, which
the runtime's start-up guard covers).
"""

from __future__ import annotations

from corral.errors import InvalidArgument

#: Supported algorithms and the length of their hex encoding.
ALGORITHMS = {"sha256": 64, "sha512": 128}
CANONICAL = "sha256"

_HEX = frozenset("0123456789abcdef")


class InvalidDigest(InvalidArgument):
    """A string is not a `sha256:`/`sha512:` digest of the right form."""


class DigestMismatch(InvalidArgument):
    """Content does not match the digest (or size) it was expected to have."""

    def __init__(self, message: str, expected: str | None = None,
                 actual: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse(digest: object, what: str = "digest") -> tuple[str, str]:
    """`"sha256:<hex>"` -> `("sha256", "<hex>")`; InvalidDigest names `what` and the value."""
    if not isinstance(digest, str):
        raise InvalidDigest(f"{what}: expected a digest string, got {_describe(digest)}")
    alg, sep, encoded = digest.partition(":")
    if not sep:
        raise InvalidDigest(f"{what}: invalid digest {_describe(digest)}: "
                            "expected <algorithm>:<hex>")
    length = ALGORITHMS.get(alg)
    if length is None:
        raise InvalidDigest(f"{what}: invalid digest {_describe(digest)}: unsupported "
                            f"algorithm {_describe(alg)} (expected sha256 or sha512)")
    if len(encoded) != length:
        raise InvalidDigest(f"{what}: invalid digest {_describe(digest)}: {alg} needs "
                            f"{length} hex digits, got {len(encoded)}")
    if not _HEX.issuperset(encoded):
        raise InvalidDigest(f"{what}: invalid digest {_describe(digest)}: "
                            "the encoded part must be lowercase hex [0-9a-f]")
    return alg, encoded


def validate(digest: object, what: str = "digest") -> str:
    """Return `digest` unchanged if it is valid, else raise InvalidDigest."""
    parse(digest, what)
    return digest  # type: ignore[return-value]


def is_valid(digest: object) -> bool:
    try:
        parse(digest)
    except InvalidDigest:
        return False
    return True


def algorithm(digest: str) -> str:
    return parse(digest)[0]


def encoded(digest: str) -> str:
    """The hex part of a valid digest (InvalidDigest otherwise)."""
    return parse(digest)[1]


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of `data` with CPython's built-in implementation when there is one
    (`_sha256`, `_sha2` from 3.12): no OpenSSL to load, for short ids on start-up paths."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found,no-redef]
        except ImportError:
            from hashlib import sha256  # type: ignore[assignment]
    return sha256(data).hexdigest()


def _new(alg: str):  # -> hashlib._Hash (typing is not imported here)
    """hashlib's hash object (hashlib, which loads OpenSSL, imported when first hashing:
    reading records by digest, as `run` does, needs none)."""
    import hashlib

    if alg not in ALGORITHMS:
        raise InvalidDigest(f"unsupported digest algorithm {_describe(alg)} "
                            "(expected sha256 or sha512)")
    return hashlib.new(alg)


class Hasher:
    """A streaming digest: `update()` chunks, then `digest()`; counts the bytes in `size`."""

    __slots__ = ("_hash", "algorithm", "size")

    def __init__(self, alg: str = CANONICAL) -> None:
        self._hash = _new(alg)
        self.algorithm = alg
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def digest(self) -> str:
        """`<alg>:<hex>` of everything written so far."""
        return f"{self.algorithm}:{self._hash.hexdigest()}"


def of_bytes(data: bytes | bytearray | memoryview, alg: str = CANONICAL) -> str:
    """The digest of `data`, e.g. `sha256:e3b0c442...` for b""."""
    h = _new(alg)
    h.update(data)
    return f"{alg}:{h.hexdigest()}"


def verify(data: bytes | bytearray | memoryview, expected: str, what: str = "content") -> None:
    """Raise DigestMismatch unless `data` hashes to `expected` (validated first)."""
    alg, _ = parse(expected, what)
    actual = of_bytes(data, alg)
    if actual != expected:
        raise DigestMismatch(f"{what}: digest mismatch: expected {expected}, got {actual}",
                             expected, actual)
