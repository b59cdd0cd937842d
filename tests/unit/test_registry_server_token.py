"""The registry server's bearer-token auth (corral.registry.server.token): JWTs made
by the test token server's throwaway key (tests/support/token_server.py, openssl),
verified here without sockets — signature, x5c and kid trust, issuer, audience,
times, access lists — and the handlers' 401 challenges with the needed scope."""

from __future__ import annotations

import base64
import io
import json
import os
import time

import pytest
from tests.support.registry_server import OCI_CONFIG, OCI_MANIFEST, descriptor, sha256
from tests.support.token_server import ISSUER, OPENSSL, SERVICE, TokenServer

from corral.errors import InvalidArgument
from corral.registry.server import Registry, RegistryStorage, Request
from corral.registry.server.token import Certificate, TokenAuth, TokenError, load_bundle

pytestmark = pytest.mark.skipif(not os.path.exists(OPENSSL), reason="needs openssl")

REALM = "http://127.0.0.1:1/token"


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    server = TokenServer(tmp_path_factory.mktemp("signer"))
    yield server
    server.httpd.server_close()


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    server = TokenServer(tmp_path_factory.mktemp("stranger"))
    yield server
    server.httpd.server_close()


@pytest.fixture(scope="module")
def ec_signer(tmp_path_factory):
    server = TokenServer(tmp_path_factory.mktemp("ec-signer"), key_type="ec")
    yield server
    server.httpd.server_close()


@pytest.fixture
def auth(signer):
    return TokenAuth(REALM, SERVICE, ISSUER, signer.cert)


def claims(*access: tuple[str, list[str]], **extra: object) -> dict:
    now = int(time.time())
    c = {"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now + 300, "nbf": now - 5,
         "iat": now, "jti": "x",
         "access": [{"type": "repository", "name": n, "actions": a} for n, a in access]}
    c.update(extra)
    return c


def test_a_valid_token_grants_its_access(auth, signer):
    token = signer.sign(claims(("a/b", ["pull", "push"])))
    assert auth.verify(token) == [{"type": "repository", "name": "a/b",
                                   "actions": ["pull", "push"]}]
    assert auth.grants(f"Bearer {token}") is not None
    assert auth.grants(f"Basic {token}") is None and auth.grants(None) is None


@pytest.mark.parametrize("change,why", [
    ({"iss": "someone-else"}, "issuer"),
    ({"aud": "other-service"}, "audience"),
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"nbf": int(time.time()) + 3600}, "not valid yet"),
])
def test_claims_are_checked(auth, signer, change, why):
    with pytest.raises(TokenError, match=why):
        auth.verify(signer.sign(claims(("a", ["pull"]), **change)))


def test_audience_may_be_a_list(auth, signer):
    assert auth.verify(signer.sign(claims(("a", ["pull"]), aud=["x", SERVICE])))


def test_signatures_and_trust(auth, signer, stranger):
    token = signer.sign(claims(("a", ["pull"])))
    head, body, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(("a", ["pull", "push"]))).encode())
    with pytest.raises(TokenError, match="bad signature"):
        auth.verify(f"{head}.{forged.rstrip(b'=').decode()}.{sig}")
    with pytest.raises(TokenError, match="not trusted"):
        auth.verify(stranger.sign(claims(("a", ["pull"]))))
    for alg in ("none", "HS256", "PS256", "ES384"):
        h = base64.urlsafe_b64encode(json.dumps({"alg": alg}).encode()).rstrip(b"=").decode()
        with pytest.raises(TokenError, match="unsupported alg"):
            auth.verify(f"{h}.{body}.{sig}")
    # the alg must fit the key: no ES256 claim over an RSA certificate
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header["alg"] = "ES256"
    h = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="ES256 with a rsa key"):
        auth.verify(f"{h}.{body}.{sig}")
    with pytest.raises(TokenError):
        auth.verify("not-a-jwt")


def test_a_kid_naming_a_root_key_is_enough(auth, signer):
    kid = load_bundle(signer.cert)[0].key_id()
    assert len(kid) == 59 and kid.count(":") == 11     # libtrust's format
    assert auth.verify(_with_kid(signer, kid))
    with pytest.raises(TokenError, match="no trusted signing key"):
        auth.verify(_with_kid(signer, ":".join(["AAAA"] * 12)))


def _with_kid(signer: TokenServer, kid: str) -> str:
    """A token whose header names its key by `kid` instead of carrying x5c."""
    import subprocess

    from tests.support.token_server import _b64

    header = {"typ": "JWT", "alg": "RS256", "kid": kid}
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(
        json.dumps(claims(("a", ["pull"]))).encode())
    sig = subprocess.run([OPENSSL, "dgst", "-sha256", "-sign", str(signer.key)],
                         input=signing_input.encode(), capture_output=True, check=True).stdout
    return signing_input + "." + _b64(sig)


def test_bundle_errors(tmp_path, signer):
    (tmp_path / "empty.pem").write_text("nothing here\n")
    with pytest.raises(InvalidArgument, match="no certificates"):
        load_bundle(tmp_path / "empty.pem")
    with pytest.raises(InvalidArgument):
        load_bundle(tmp_path / "missing.pem")
    cert = load_bundle(signer.cert)[0]
    assert isinstance(cert, Certificate) and cert.key is not None
    assert cert.signed_by(cert, time.time())     # self-signed


# -- the handlers ------------------------------------------------------------------

def call(registry, method, path, token=None, body=b"", query=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body:
        headers["Content-Length"] = str(len(body))
    return registry.handle(Request(method, path, query or {}, headers, io.BytesIO(body)))


def challenge(r) -> str:
    assert r.status == 401, r.body
    assert json.loads(r.body)["errors"][0]["code"] == "UNAUTHORIZED"
    return r.header("WWW-Authenticate")


def test_handlers_ask_for_the_scope_they_need(tmp_path, auth, signer):
    registry = Registry(RegistryStorage(tmp_path / "reg"), auth)
    assert challenge(call(registry, "GET", "/v2/")) == \
        f'Bearer realm="{REALM}",service="{SERVICE}"'
    anything = signer.sign(claims())
    assert call(registry, "GET", "/v2/", anything).status == 200
    assert 'scope="repository:a/b:pull"' in challenge(
        call(registry, "GET", "/v2/a/b/tags/list"))
    assert challenge(call(registry, "GET", "/v2/a/b/tags/list", anything)).endswith(
        'scope="repository:a/b:pull",error="insufficient_scope"')
    assert 'scope="repository:a/b:pull,push"' in challenge(
        call(registry, "POST", "/v2/a/b/blobs/uploads/"))
    assert 'scope="repository:a/b:delete"' in challenge(
        call(registry, "DELETE", f"/v2/a/b/manifests/{sha256(b'x')}", anything))
    assert 'scope="registry:catalog:*"' in challenge(call(registry, "GET", "/v2/_catalog"))

    pusher = signer.sign(claims(("a/b", ["pull", "push"])))
    layer, config = b"layer", b"{}"
    for data in (layer, config):
        r = call(registry, "POST", "/v2/a/b/blobs/uploads/", pusher, data,
                 {"digest": [sha256(data)]})
        assert r.status == 201
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)]}
    data = json.dumps(doc).encode()
    r = registry.handle(Request("PUT", "/v2/a/b/manifests/v1", {},
                                {"Authorization": f"Bearer {pusher}",
                                 "Content-Type": OCI_MANIFEST,
                                 "Content-Length": str(len(data))}, io.BytesIO(data)))
    assert r.status == 201
    reader = signer.sign(claims(("a/b", ["pull"])))
    assert call(registry, "GET", "/v2/a/b/manifests/v1", reader).status == 200
    assert challenge(call(registry, "POST", "/v2/a/b/blobs/uploads/", reader))

    # a mount from a repository the token cannot pull from: an upload session instead
    other = signer.sign(claims(("c", ["pull", "push"])))
    mount = {"mount": [sha256(layer)], "from": ["a/b"]}
    assert call(registry, "POST", "/v2/c/blobs/uploads/", other, query=mount).status == 202
    both = signer.sign(claims(("c", ["pull", "push"]), ("a/b", ["pull"])))
    assert call(registry, "POST", "/v2/c/blobs/uploads/", both, query=mount).status == 201


def test_es256_tokens_from_a_p256_certificate(tmp_path, ec_signer, signer):
    auth = TokenAuth(REALM, SERVICE, ISSUER, ec_signer.cert)
    cert = load_bundle(ec_signer.cert)[0]
    assert cert.key is not None and cert.key.kind == "ec" and cert.key.on_curve()
    assert cert.signed_by(cert, time.time())          # ecdsa-with-SHA256, DER (r, s)
    token = ec_signer.sign(claims(("a", ["pull"])))
    assert auth.verify(token)[0]["actions"] == ["pull"]
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[5] ^= 1
    bad = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="bad signature"):
        auth.verify(f"{head}.{body}.{bad}")
    with pytest.raises(TokenError, match="not trusted"):       # an RSA signer's token
        auth.verify(signer.sign(claims(("a", ["pull"]))))
    # a bundle of both: each token checked with its own certificate's key
    both = tmp_path / "both.pem"
    both.write_text(signer.cert.read_text() + ec_signer.cert.read_text())
    mixed = TokenAuth(REALM, SERVICE, ISSUER, both)
    assert mixed.verify(token) and mixed.verify(signer.sign(claims(("a", ["pull"]))))


def _openssl(*args: str, cwd) -> None:
    import subprocess

    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def _der_b64(pem) -> str:
    import subprocess

    der = subprocess.run([OPENSSL, "x509", "-in", str(pem), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return base64.b64encode(der).decode()


def _token(key, chain: list[str]) -> str:
    import subprocess

    from tests.support.token_server import _b64

    header = {"typ": "JWT", "alg": "RS256", "x5c": chain}
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(
        json.dumps(claims(("a", ["pull"]))).encode())
    sig = subprocess.run([OPENSSL, "dgst", "-sha256", "-sign", str(key)],
                         input=signing_input.encode(), capture_output=True, check=True).stdout
    return signing_input + "." + _b64(sig)


def test_a_signer_issued_by_a_bundle_ca_but_no_intermediates(tmp_path):
    """x5c[0] signed by a bundle CA is trusted; a certificate that the signer
    itself issued (the signer as an intermediate) is not."""
    rsa = ["-newkey", "rsa:2048", "-nodes", "-sha256"]
    _openssl("req", "-x509", *rsa, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=test ca", "-addext", "basicConstraints=critical,CA:TRUE", cwd=tmp_path)
    for name, issuer in (("leaf", "ca"), ("fake", "leaf")):
        _openssl("req", *rsa, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=tmp_path)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey",
                 f"{issuer}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "1",
                 "-sha256", cwd=tmp_path)
    auth = TokenAuth(REALM, SERVICE, ISSUER, tmp_path / "ca.pem")
    leaf, fake, ca = (_der_b64(tmp_path / f"{n}.pem") for n in ("leaf", "fake", "ca"))
    assert auth.verify(_token(tmp_path / "leaf.key", [leaf, ca]))
    assert auth.verify(_token(tmp_path / "leaf.key", [leaf]))
    with pytest.raises(TokenError, match="not trusted"):
        auth.verify(_token(tmp_path / "fake.key", [fake, leaf, ca]))
    with pytest.raises(TokenError, match="bad signature"):      # x5c names another key
        auth.verify(_token(tmp_path / "fake.key", [leaf, ca]))
