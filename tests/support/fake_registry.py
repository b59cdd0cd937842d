"""An in-memory OCI distribution registry on 127.0.0.1 with fault injection.

Enough of the distribution spec for the client's tests: manifests and blobs
(GET/HEAD, `Range` on blobs), uploads (POST, PATCH, PUT `?digest=`,
`?mount=&from=`), and optional auth — `basic=("user", "pw")` or
`bearer=("user", "pw")` with a token endpoint at `/token` (realm, service,
scope; anonymous tokens carry pull scopes only when `anonymous_pull`).

Faults (`FakeRegistry.faults`, consumed in order per kind):
* `"drop"`: the next blob GET sends the headers and half the body, then closes;
* `"corrupt"`: the next blob GET sends different bytes of the same length
  (`corrupt_blobs`: every GET of those digests);
* `"500"`: the next request of any kind gets 500 (`fail_always` for every one;
  `fail_blobs`: every GET of those blob digests).
`log` records `(method, path+query, status)`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    def __init__(self, *, basic: tuple[str, str] | None = None,
                 bearer: tuple[str, str] | None = None, anonymous_pull: bool = False) -> None:
        self.blobs: dict[str, bytes] = {}
        self.repo_blobs: dict[str, set[str]] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.uploads: dict[str, tuple[str, bytearray]] = {}
        self.basic = basic
        self.bearer = bearer
        self.anonymous_pull = anonymous_pull
        self.tokens: dict[str, set[str]] = {}
        self.faults: list[str] = []
        self.fail_always = False
        self.fail_blobs: set[str] = set()
        self.corrupt_blobs: set[str] = set()
        self.slow_blobs: set[str] = set()   # sent 64 KiB every 0.2 s
        self.drop_blobs: set[str] = set()   # every GET: half the body, then the connection drops
        self.stall_blobs: set[str] = set()  # every GET: 128 KiB, then nothing for 60 s
        self._closing = False
        self.log: list[tuple[str, str, int]] = []
        self.ranges: list[tuple[str, str]] = []     # (digest, Range header) of blob GETs
        self.token_requests: list[dict[str, list[str]]] = []
        self.lock = threading.Lock()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                registry.handle(self, "GET")

            def do_HEAD(self) -> None:
                registry.handle(self, "HEAD")

            def do_POST(self) -> None:
                registry.handle(self, "POST")

            def do_PATCH(self) -> None:
                registry.handle(self, "PATCH")

            def do_PUT(self) -> None:
                registry.handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing = True          # stalled handlers end
        self.server.shutdown()
        self.server.server_close()

    # -- content --------------------------------------------------------------
    def add_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        self.blobs[digest] = data
        self.repo_blobs.setdefault(repo, set()).add(digest)
        return digest

    def add_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        digest = sha256(data)
        self.manifests[(repo, ref)] = (data, media_type)
        self.manifests[(repo, digest)] = (data, media_type)
        return digest

    def _fault(self, kind: str) -> bool:
        with self.lock:
            if kind in self.faults:
                self.faults.remove(kind)
                return True
        return False

    # -- auth -----------------------------------------------------------------
    def _authorized(self, h: BaseHTTPRequestHandler, repo: str | None, action: str) -> bool:
        header = h.headers.get("Authorization", "")
        if self.basic:
            want = "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
            if header == want:
                return True
            self._reply(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication '
                              b'required"}]}', {"WWW-Authenticate": 'Basic realm="fake"'})
            return False
        if self.bearer:
            scopes = self.tokens.get(header.removeprefix("Bearer "), None)
            need = f"repository:{repo}:{action}" if repo else None
            if scopes is not None and (need is None or need in scopes):
                return True
            challenge = f'Bearer realm="http://{self.host}/token",service="fake"'
            if need:
                challenge += f',scope="repository:{repo}:{action}"'
            self._reply(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}',
                        {"WWW-Authenticate": challenge})
            return False
        return True

    def _token(self, h: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        self.token_requests.append(query)
        header = h.headers.get("Authorization", "")
        user_ok = bool(self.bearer) and header == "Basic " + base64.b64encode(
            ":".join(self.bearer).encode()).decode()  # type: ignore[arg-type]
        if header and not user_ok:
            self._reply(h, 401, b'{"details":"bad credentials"}')
            return
        granted = set()
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            for action in actions.split(","):
                if user_ok or (self.anonymous_pull and action == "pull"):
                    granted.add(f"{kind}:{name}:{action}")
        token = uuid.uuid4().hex
        self.tokens[token] = granted
        self._reply(h, 200, json.dumps({"token": token, "expires_in": 300}).encode(),
                    {"Content-Type": "application/json"})

    # -- plumbing -------------------------------------------------------------
    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: bytes = b"",
               headers: dict[str, str] | None = None, *, head: bool = False) -> None:
        self.log.append((h.command, h.path, status))
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, head: bool = False) -> None:
        self._reply(h, status, json.dumps({"errors": [{"code": code, "message": code.lower()}]})
                    .encode(), {"Content-Type": "application/json"}, head=head)

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if url.path == "/token":
            self._token(h, query)
            return
        if self.fail_always or self._fault("500"):
            self._error(h, 500, "UNKNOWN", head=method == "HEAD")
            return
        if url.path == "/v2/":
            if self._authorized(h, None, "pull"):
                self._reply(h, 200, b"{}")
            return
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/(uploads/?)?([^/]*)", url.path)
        if not m:
            self._error(h, 404, "NAME_UNKNOWN")
            return
        repo, kind, uploads, ref = m.groups()
        action = "pull" if method in ("GET", "HEAD") else "push"
        if not self._authorized(h, repo, action):
            return
        if kind == "manifests":
            self._manifest(h, method, repo, ref, body)
        elif uploads is not None:
            self._upload(h, method, repo, ref, query, body)
        else:
            self._blob(h, method, repo, ref)

    def _manifest(self, h: BaseHTTPRequestHandler, method: str, repo: str, ref: str,
                  body: bytes) -> None:
        if method == "PUT":
            digest = self.add_manifest(repo, ref, body, h.headers.get("Content-Type", ""))
            self._reply(h, 201, b"", {"Docker-Content-Digest": digest,
                                      "Location": f"/v2/{repo}/manifests/{digest}"})
            return
        found = self.manifests.get((repo, ref))
        if found is None:
            self._error(h, 404, "MANIFEST_UNKNOWN", head=method == "HEAD")
            return
        data, media_type = found
        self._reply(h, 200, data, {"Content-Type": media_type,
                                   "Docker-Content-Digest": sha256(data)},
                    head=method == "HEAD")

    def _blob(self, h: BaseHTTPRequestHandler, method: str, repo: str, digest: str) -> None:
        data = self.blobs.get(digest)
        if data is None or digest not in self.repo_blobs.get(repo, ()):
            self._error(h, 404, "BLOB_UNKNOWN", head=method == "HEAD")
            return
        if method == "HEAD":
            self._reply(h, 200, b"", {"Content-Length": str(len(data))}, head=True)
            return
        if digest in self.fail_blobs:
            self._error(h, 500, "UNKNOWN")
            return
        start = 0
        rng = h.headers.get("Range")
        status = 200
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        if rng:
            self.ranges.append((digest, rng))
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))  # type: ignore[union-attr]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        part = data[start:]
        if self._fault("corrupt") or digest in self.corrupt_blobs:
            part = bytes(b ^ 0xFF for b in part)
        if self._fault("drop") or digest in self.drop_blobs:
            self.log.append((h.command, h.path, -1))
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(part)))
            h.end_headers()
            h.wfile.write(part[:len(part) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if digest in self.stall_blobs:
            import time

            self.log.append((h.command, h.path, status))
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(part)))
            h.end_headers()
            try:
                h.wfile.write(part[:131072])
                h.wfile.flush()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not self._closing:
                    time.sleep(0.05)
            except OSError:
                pass
            h.close_connection = True
            return
        if digest in self.slow_blobs:
            import time

            self.log.append((h.command, h.path, status))
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(part)))
            h.end_headers()
            try:
                for i in range(0, len(part), 65536):
                    h.wfile.write(part[i:i + 65536])
                    h.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        self._reply(h, status, part, headers)

    def _upload(self, h: BaseHTTPRequestHandler, method: str, repo: str, session: str,
                query: dict[str, list[str]], body: bytes) -> None:
        if method == "POST":
            mount, source = query.get("mount", [None])[0], query.get("from", [None])[0]
            if mount and source and mount in self.repo_blobs.get(source, ()):
                self.repo_blobs.setdefault(repo, set()).add(mount)
                self._reply(h, 201, b"", {"Location": f"/v2/{repo}/blobs/{mount}",
                                          "Docker-Content-Digest": mount})
                return
            sid = uuid.uuid4().hex
            self.uploads[sid] = (repo, bytearray())
            self._reply(h, 202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{sid}",
                                      "Range": "0-0"})
            return
        if session not in self.uploads:
            self._error(h, 404, "BLOB_UPLOAD_UNKNOWN")
            return
        _, buf = self.uploads[session]
        if method == "PATCH":
            crange = h.headers.get("Content-Range")
            if crange and int(crange.split("-")[0]) != len(buf):
                self._error(h, 416, "BLOB_UPLOAD_INVALID")
                return
            buf += body
            self._reply(h, 202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{session}",
                                      "Range": f"0-{len(buf) - 1}"})
            return
        buf += body
        digest = query.get("digest", [""])[0]
        if sha256(bytes(buf)) != digest:
            self._error(h, 400, "DIGEST_INVALID")
            return
        del self.uploads[session]
        self.add_blob(repo, bytes(buf))
        self._reply(h, 201, b"", {"Location": f"/v2/{repo}/blobs/{digest}",
                                  "Docker-Content-Digest": digest})
