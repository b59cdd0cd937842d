"""Bearer-token authorization for the registry server (distribution's `auth: token:`).

The docker token protocol (distribution docs/spec/auth/token.md, jwt.md): a
request without a valid token gets 401 with
`WWW-Authenticate: Bearer realm="REALM",service="SERVICE",scope="repository:NAME:pull"`
(the scope the request needs; `error="insufficient_scope"` when a token was
sent but does not grant it). The client fetches a JWT from the realm and
sends it as `Authorization: Bearer <jwt>`.

A token is accepted when:
* its signature (RS256, RS384, RS512 or ES256) verifies with a trusted key: the
  first certificate of the `x5c` chain in its header is a certificate of
  `rootcertbundle` or is signed by one (no intermediates); or its `kid` is
  the libtrust key id of one of those certificates' keys (what distribution
  computes);
* `iss` is the issuer, `aud` is (or contains) the service;
* `nbf` <= now <= `exp` (60 s of leeway);
* its `access` list grants the request's actions: `pull` for reads,
  `pull` and `push` for uploads and manifest PUTs, `delete` for DELETEs,
  `registry:catalog:*` for `_catalog`; `/v2/` needs only a valid token.

Cryptography is done here with Python integers (RSASSA-PKCS1-v1_5 is one
modular exponentiation; ECDSA on P-256 a few hundred point operations, a few
milliseconds) and a small DER reader for certificates, so the server needs no
extra package; verified tokens are cached by their SHA-256 until they expire.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from corral.errors import InvalidArgument

LEEWAY = 60
#: JWS alg -> (key type, hash)
_ALGS = {"RS256": ("rsa", "sha256"), "RS384": ("rsa", "sha384"), "RS512": ("rsa", "sha512"),
         "ES256": ("ec", "sha256")}
# DigestInfo prefixes (RFC 8017 9.2 note 1)
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_OID_RSA = bytes.fromhex("2a864886f70d010101")
_OID_EC = bytes.fromhex("2a8648ce3d0201")
_OID_P256 = bytes.fromhex("2a8648ce3d030107")
_CERT_SIG_OIDS = {
    bytes.fromhex("2a864886f70d01010b"): ("rsa", "sha256"),
    bytes.fromhex("2a864886f70d01010c"): ("rsa", "sha384"),
    bytes.fromhex("2a864886f70d01010d"): ("rsa", "sha512"),
    bytes.fromhex("2a8648ce3d040302"): ("ec", "sha256"),
    bytes.fromhex("2a8648ce3d040303"): ("ec", "sha384"),
}
# P-256 (SEC 2 2.4.2 / FIPS 186-4 D.1.2.3): y^2 = x^3 - 3x + b over GF(p), order n
_P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
_B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b
_G = (0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296,
      0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5)


class TokenError(Exception):
    """A token that is not accepted (the message says why; never shown to clients)."""


# -- DER ---------------------------------------------------------------------------

def _tlv(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(tag, start of the value, end of the value, start of the element) at `pos`."""
    if pos + 2 > len(data):
        raise TokenError("DER: truncated")
    tag = data[pos]
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise TokenError("DER: bad length")
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise TokenError("DER: truncated")
    return tag, start, end, pos


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    out = []
    pos = start
    while pos < end:
        item = _tlv(data, pos)
        out.append(item)
        pos = item[2]
    return out


def _der_time(data: bytes, tag: int, start: int, end: int) -> float:
    text = data[start:end].decode("ascii")
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    parsed = datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


@dataclass(frozen=True)
class RsaKey:
    n: int
    e: int

    kind = "rsa"

    def verify(self, message: bytes, signature: bytes, hash_name: str,
               der: bool = False) -> bool:
        """RSASSA-PKCS1-v1_5 (RFC 8017 8.2.2)."""
        k = (self.n.bit_length() + 7) // 8
        if len(signature) != k or k < 128:
            return False
        s = int.from_bytes(signature, "big")
        if s >= self.n:
            return False
        em = pow(s, self.e, self.n).to_bytes(k, "big")
        t = _DIGEST_INFO[hash_name] + hashlib.new(hash_name, message).digest()
        if k < len(t) + 11:
            return False
        expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        return hmac.compare_digest(em, expected)


Point = tuple[int, int] | None


def _ec_add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    (x1, y1), (x2, y2) = a, b
    if x1 == x2:
        if (y1 + y2) % _P == 0:
            return None
        lam = (3 * x1 * x1 - 3) * pow(2 * y1, -1, _P) % _P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, _P) % _P
    x3 = (lam * lam - x1 - x2) % _P
    return x3, (lam * (x1 - x3) - y1) % _P


def _ec_mul2(u1: int, p: Point, u2: int, q: Point) -> Point:
    """u1*p + u2*q (Shamir's trick)."""
    both = _ec_add(p, q)
    r: Point = None
    for i in range(max(u1.bit_length(), u2.bit_length()) - 1, -1, -1):
        r = _ec_add(r, r)
        b1, b2 = (u1 >> i) & 1, (u2 >> i) & 1
        if b1 or b2:
            r = _ec_add(r, both if b1 and b2 else p if b1 else q)
    return r


@dataclass(frozen=True)
class EcKey:
    """A P-256 public key."""

    x: int
    y: int
    kind = "ec"

    def on_curve(self) -> bool:
        return 0 <= self.x < _P and 0 <= self.y < _P and \
            (self.y * self.y - (self.x ** 3 - 3 * self.x + _B)) % _P == 0

    def verify(self, message: bytes, signature: bytes, hash_name: str,
               der: bool = False) -> bool:
        """ECDSA (FIPS 186-4 6.4): `signature` is r||s (JWS) or, with `der`, a DER SEQUENCE."""
        if der:
            try:
                _, start, end, _ = _tlv(signature, 0)
                r_el, s_el = _children(signature, start, end)[:2]
            except (TokenError, ValueError):
                return False
            r = int.from_bytes(signature[r_el[1]:r_el[2]], "big")
            s = int.from_bytes(signature[s_el[1]:s_el[2]], "big")
        else:
            if len(signature) != 64:
                return False
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        if not (0 < r < _N and 0 < s < _N) or not self.on_curve():
            return False
        digest = hashlib.new(hash_name, message).digest()
        e = int.from_bytes(digest, "big") >> max(0, len(digest) * 8 - 256)
        w = pow(s, -1, _N)
        point = _ec_mul2(e * w % _N, _G, r * w % _N, (self.x, self.y))
        return point is not None and point[0] % _N == r


@dataclass(frozen=True)
class Certificate:
    der: bytes
    tbs: bytes
    sig_alg: tuple[str, str] | None      # (key type, hash) of the issuer's signature
    signature: bytes
    not_before: float
    not_after: float
    spki: bytes
    key: RsaKey | EcKey | None

    @classmethod
    def parse(cls, der: bytes) -> Certificate:
        try:
            _tag, start, end, _ = _tlv(der, 0)
            tbs_el, alg_el, sig_el = _children(der, start, end)[:3]
            tbs = der[tbs_el[3]:tbs_el[2]]
            alg_oid = _children(der, alg_el[1], alg_el[2])[0]
            sig_alg = _CERT_SIG_OIDS.get(der[alg_oid[1]:alg_oid[2]])
            signature = der[sig_el[1] + 1:sig_el[2]]          # BIT STRING: skip unused-bits
            fields = _children(der, tbs_el[1], tbs_el[2])
            if fields[0][0] == 0xA0:                          # [0] version
                fields = fields[1:]
            validity, spki_el = fields[3], fields[5]
            times = _children(der, validity[1], validity[2])
            not_before = _der_time(der, times[0][0], times[0][1], times[0][2])
            not_after = _der_time(der, times[1][0], times[1][1], times[1][2])
            spki = der[spki_el[3]:spki_el[2]]
            key_alg, key_bits = _children(der, spki_el[1], spki_el[2])[:2]
            key_oid, *params = _children(der, key_alg[1], key_alg[2])
            key: RsaKey | EcKey | None = None
            if der[key_oid[1]:key_oid[2]] == _OID_EC and params \
                    and der[params[0][1]:params[0][2]] == _OID_P256:
                point = der[key_bits[1] + 1:key_bits[2]]
                if len(point) == 65 and point[0] == 4:
                    key = EcKey(int.from_bytes(point[1:33], "big"),
                                int.from_bytes(point[33:], "big"))
            elif der[key_oid[1]:key_oid[2]] == _OID_RSA:
                inner = der[key_bits[1] + 1:key_bits[2]]
                _, s, e, _ = _tlv(inner, 0)
                n_el, e_el = _children(inner, s, e)[:2]
                key = RsaKey(int.from_bytes(inner[n_el[1]:n_el[2]], "big"),
                             int.from_bytes(inner[e_el[1]:e_el[2]], "big"))
        except (IndexError, ValueError, UnicodeDecodeError) as exc:
            raise TokenError(f"certificate: cannot parse ({exc})") from None
        return cls(der, tbs, sig_alg, signature, not_before, not_after, spki, key)

    def signed_by(self, issuer: Certificate, now: float) -> bool:
        return (issuer.key is not None and self.sig_alg is not None
                and self.sig_alg[0] == issuer.key.kind
                and issuer.not_before - LEEWAY <= now <= issuer.not_after + LEEWAY
                and issuer.key.verify(self.tbs, self.signature, self.sig_alg[1], der=True))

    def key_id(self) -> str:
        """libtrust's key id: base32 of the first 240 bits of sha256(SPKI), in groups of 4."""
        text = base64.b32encode(hashlib.sha256(self.spki).digest()[:30]).decode()
        return ":".join(text[i:i + 4] for i in range(0, 48, 4))


def load_bundle(path: Path | str) -> list[Certificate]:
    """The certificates of a PEM file (distribution's `rootcertbundle`)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidArgument(f"token root certificate bundle {path}: {exc.strerror}") from None
    certs = []
    for block in text.split("-----BEGIN CERTIFICATE-----")[1:]:
        body = block.split("-----END CERTIFICATE-----")[0]
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
            certs.append(Certificate.parse(der))
        except (binascii.Error, TokenError) as exc:
            raise InvalidArgument(f"token root certificate bundle {path}: {exc}") from None
    if not certs:
        raise InvalidArgument(f"token root certificate bundle {path}: no certificates")
    return certs


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("bad base64url") from None


# -- access --------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    """What a request needs: (type, name, actions), e.g. ("repository", "a/b", ("pull",))."""

    type: str
    name: str
    actions: tuple[str, ...]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


class TokenAuth:
    """Verifies bearer tokens (see the module docstring)."""

    scheme = "bearer"

    def __init__(self, realm: str, service: str, issuer: str,
                 rootcertbundle: Path | str) -> None:
        if not realm or not service or not issuer:
            raise InvalidArgument("token auth needs a realm, a service and an issuer")
        self.realm = realm
        self.service = service
        self.issuer = issuer
        self.roots = load_bundle(rootcertbundle)
        self._by_kid = {c.key_id(): c for c in self.roots if c.key is not None}
        self._cache: dict[bytes, tuple[float, list[dict]]] = {}
        self._lock = threading.Lock()

    def challenge(self, needed: list[Access], insufficient: bool = False) -> str:
        parts = [f'realm="{self.realm}"', f'service="{self.service}"']
        if needed:
            parts.append('scope="' + " ".join(a.scope() for a in needed) + '"')
        if insufficient:
            parts.append('error="insufficient_scope"')
        return "Bearer " + ",".join(parts)

    def grants(self, authorization: str | None) -> list[dict] | None:
        """The token's `access` list, or None when there is no acceptable token."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            return self.verify(token.strip())
        except TokenError:
            return None

    def verify(self, token: str, now: float | None = None) -> list[dict]:
        """The `access` list of a valid token; TokenError otherwise."""
        now = time.time() if now is None else now
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now <= cached[0] + LEEWAY:
            return cached[1]
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("not a JWS compact serialization")
        try:
            header = json.loads(_b64url(parts[0]))
            claims = json.loads(_b64url(parts[1]))
        except ValueError:
            raise TokenError("header or claims are not JSON") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("header or claims are not objects")
        alg = _ALGS.get(str(header.get("alg")))
        if alg is None:
            raise TokenError(f"unsupported alg {header.get('alg')!r}")
        signing_key = self._signing_key(header, now)
        if signing_key.kind != alg[0]:
            raise TokenError(f"alg {header.get('alg')} with a {signing_key.kind} key")
        if not signing_key.verify(f"{parts[0]}.{parts[1]}".encode(), _b64url(parts[2]),
                                  alg[1]):
            raise TokenError("bad signature")
        if claims.get("iss") != self.issuer:
            raise TokenError(f"issuer {claims.get('iss')!r}")
        aud = claims.get("aud")
        if not (aud == self.service or (isinstance(aud, list) and self.service in aud)):
            raise TokenError(f"audience {aud!r}")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or now > exp + LEEWAY:
            raise TokenError("expired")
        if isinstance(nbf, (int, float)) and now < nbf - LEEWAY:
            raise TokenError("not valid yet")
        access = claims.get("access") or []
        if not isinstance(access, list):
            raise TokenError("access is not a list")
        granted = [a for a in access if isinstance(a, dict)]
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = (float(exp), granted)
        return granted

    def _signing_key(self, header: dict, now: float) -> RsaKey | EcKey:
        chain = header.get("x5c")
        if isinstance(chain, list) and chain:
            try:
                certs = [Certificate.parse(base64.b64decode(c, validate=True)) for c in chain]
            except (binascii.Error, TypeError, ValueError):
                raise TokenError("x5c: bad certificate encoding") from None
            if self._trusted(certs, now) and certs[0].key is not None:
                return certs[0].key
            raise TokenError("x5c chain is not trusted")
        kid = header.get("kid")
        root = self._by_kid.get(kid) if isinstance(kid, str) else None
        if root is not None and root.key is not None \
                and root.not_before - LEEWAY <= now <= root.not_after + LEEWAY:
            return root.key
        raise TokenError("no trusted signing key (x5c or kid)")

    def _trusted(self, chain: list[Certificate], now: float) -> bool:
        """The signing certificate (x5c[0]) is a bundle certificate or is signed by one.

        Intermediates are not followed: without checking their CA constraints,
        any certificate a bundle CA issued could otherwise sign a "signer"."""
        leaf = chain[0]
        if not leaf.not_before - LEEWAY <= now <= leaf.not_after + LEEWAY:
            return False
        return any(leaf.der == root.der or leaf.signed_by(root, now) for root in self.roots)


def allowed(granted: list[dict], needed: list[Access]) -> bool:
    """Whether `granted` (a token's access list) covers every needed access."""
    for need in needed:
        have: set[str] = set()
        for g in granted:
            if g.get("type") == need.type and g.get("name") == need.name:
                actions = g.get("actions")
                if isinstance(actions, list):
                    have.update(str(a) for a in actions)
        if "*" not in have and not set(need.actions) <= have:
            return False
    return True
