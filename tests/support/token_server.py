"""A docker token server (distribution's docs/spec/auth/token.md) on 127.0.0.1 for tests.

`TokenServer(tmp, users={"alice": "s3cret"}, anonymous=("pull",))` makes a
throwaway RSA key (P-256 with `key_type="ec"`: ES256) and a self-signed certificate (`cert`, the registry's
`rootcertbundle`) with the openssl command, and answers
`GET /token?service=&scope=...&account=` with a JWT signed RS256 whose header
carries the certificate (`x5c`), as distribution's token auth verifies it:
issuer, audience (the service), nbf/exp and the granted `access` list.

A user with the right password gets every action asked for; anyone else
(no credentials) only the actions in `anonymous`; a wrong password is a 401.
`requests` records (account, scopes, had credentials) of every token request.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, urlsplit

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
ISSUER = "corral-test-issuer"
SERVICE = "corral-test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    def __init__(self, tmp: Path, users: dict[str, str] | None = None,
                 anonymous: tuple[str, ...] = ("pull",), key_type: str = "rsa") -> None:
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.users = users or {}
        self.anonymous = anonymous
        self.requests: list[tuple[str | None, list[str], bool]] = []
        self.key = self.tmp / "token-signer.key"
        self.cert = self.tmp / "token-signer.pem"
        self.alg = "ES256" if key_type == "ec" else "RS256"
        newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
                  if key_type == "ec" else ["-newkey", "rsa:2048"])
        subprocess.run([OPENSSL, "req", "-x509", *newkey, "-nodes", "-sha256",
                        "-days", "1", "-subj", "/CN=corral test token signer",
                        "-keyout", str(self.key), "-out", str(self.cert)],
                       check=True, capture_output=True)
        der = subprocess.run([OPENSSL, "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def sign(self, claims: dict[str, object]) -> str:
        header = {"typ": "JWT", "alg": self.alg, "x5c": [self._x5c]}
        signing_input = (_b64(json.dumps(header).encode()) + "."
                         + _b64(json.dumps(claims).encode()))
        return signing_input + "." + _b64(self.raw_signature(signing_input.encode()))

    def raw_signature(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5, or for EC the JWS form r||s of openssl's DER (r, s)."""
        signature = subprocess.run([OPENSSL, "dgst", "-sha256", "-sign", str(self.key)],
                                   input=data, check=True, capture_output=True).stdout
        if self.alg != "ES256":
            return signature
        pos, ints = 2, []                     # SEQUENCE { INTEGER r, INTEGER s }, short form
        for _ in range(2):
            length = signature[pos + 1]
            ints.append(int.from_bytes(signature[pos + 2:pos + 2 + length], "big"))
            pos += 2 + length
        return ints[0].to_bytes(32, "big") + ints[1].to_bytes(32, "big")

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query)
        if url.path != "/token" or query.get("service") != [SERVICE]:
            h.send_response(400)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        user = None
        authz = h.headers.get("Authorization") or ""
        if authz.lower().startswith("basic "):
            raw = base64.b64decode(authz.split(None, 1)[1]).decode()
            name, _, password = raw.partition(":")
            if self.users.get(name) != password:
                self.requests.append((name, query.get("scope", []), True))
                h.send_response(401)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            user = name
        scopes = query.get("scope", [])
        self.requests.append((query.get("account", [None])[0], scopes, user is not None))
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if user else [a for a in wanted if a in self.anonymous]
            access.append({"type": kind, "name": repo, "actions": granted})
        now = int(time.time())
        token = self.sign({"iss": ISSUER, "sub": user or "", "aud": SERVICE,
                           "exp": now + 300, "nbf": now - 10, "iat": now,
                           "jti": os.urandom(8).hex(), "access": access})
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def registry_auth(self) -> str:
        """The `auth:` section of a docker-registry config using this server."""
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {SERVICE}\n"
                f"    issuer: {ISSUER}\n    rootcertbundle: {self.cert}\n")

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
