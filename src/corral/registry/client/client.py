"""The OCI distribution API client (distribution spec: "Pull", "Push", "Content Discovery").

`Registry` talks to one registry host over one `httpx.Client` (shared by the
download and upload threads): it finds the scheme (https; plain http only for
insecure registries, see corral.registry.client.config), answers auth
challenges through an `Authorizer`, and retries what can be retried:

* connection errors, timeouts, 429 and 5xx: `retries` more attempts with
  backoff (0.25 s doubling);
* a blob download that breaks mid-way resumes with `Range: bytes=N-` from the
  byte it got to (`BlobReader`); a server that ignores the range (200) is
  read from the start again, skipping what was already passed on;
* 401 once more with a fresh token (expired tokens).

Manifests are fetched with every OCI and Docker schema-2 type in `Accept`;
a manifest fetched by digest is verified against it, one fetched by tag
against `Docker-Content-Digest` when the registry sends it. Blob contents are
verified by whoever stores them (the content store's ingest).

Uploads (spec "Pushing blobs"): HEAD first (present: skipped); a mount from
another repository of the same registry when one is known to have the blob
(`POST ?mount=&from=`; a 202 answer is an upload session to use instead);
else POST + PUT `?digest=` (monolithic) or, for blobs larger than
`chunk_size`, PATCHes with `Content-Range` then the closing PUT.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Self
from urllib.parse import urlencode, urljoin

from corral.oci.image import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
)
from corral.registry.client import auth as auths
from corral.registry.client.config import RegistryOptions, is_loopback, ssl_context
from corral.registry.client.errors import (
    InsecureRefused,
    RegistryError,
    RegistryUnavailable,
    Unauthorized,
    from_status,
)

MANIFEST_ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}"
MAX_MANIFEST = 4 << 20
CHUNK = 1 << 20
USER_AGENT = "corral/0.1"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_LAZY_CAS = "corral_lazy_cas"     # request extension: no system CAs needed for this one


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return (httpx.TransportError, OSError)


class Registry:
    """One registry host (host[:port]); see the module docstring."""

    def __init__(self, host: str, options: RegistryOptions, *, insecure: bool = False) -> None:
        import httpx

        self.host = host
        self.options = options
        self.insecure = insecure or options.insecure(host)
        self.may_use_http = self.insecure or is_loopback(host)
        # the system CAs are loaded before the first https request (a hook), not
        # here: a plain-http (loopback, insecure) registry never needs them
        self._ssl = ssl_context(host, options.cert_dir, not self.insecure, system_cas=False)
        self._cas_loaded = False
        self._ca_lock = threading.Lock()
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        timeout = httpx.Timeout(30.0, connect=10.0)
        self.http = httpx.Client(verify=self._ssl, limits=limits, timeout=timeout,
                                 follow_redirects=True,
                                 headers={"User-Agent": USER_AGENT,
                                          "Accept-Encoding": "identity"},
                                 event_hooks={"request": [self._before_request]})
        self.scheme: str | None = None
        self._lock = threading.Lock()
        creds = None
        if options.username is not None:
            creds = auths.Credentials(options.username, options.password or "")
        self._explicit_creds = creds
        self._authorizers: dict[str, auths.Authorizer] = {}

    def close(self) -> None:
        self.http.close()

    def _before_request(self, request: Any) -> None:
        if request.url.scheme == "https" and not self._cas_loaded \
                and not request.extensions.get(_LAZY_CAS):
            self._load_cas()

    def _load_cas(self) -> None:
        with self._ca_lock:
            if not self._cas_loaded:
                self._ssl.load_default_certs()
                self._cas_loaded = True

    # -- plumbing ---------------------------------------------------------------

    def authorizer(self, repository: str) -> auths.Authorizer:
        with self._lock:
            a = self._authorizers.get("")
            if a is None:
                creds = self._explicit_creds or auths.lookup(
                    self.host if self.host != "registry-1.docker.io" else "docker.io",
                    repository, authfile=self.options.authfile)
                a = auths.Authorizer(self.host, creds, self.http)
                self._authorizers[""] = a
            return a

    def base(self) -> str:
        """https://host or, for an insecure registry without TLS, http://host."""
        with self._lock:
            if self.scheme is not None:
                return f"{self.scheme}://{self.host}"
        errors = _transport_errors()
        tls_error: BaseException | None = None
        last: BaseException | None = None
        for scheme in ("https", "http"):
            if scheme == "http" and not self.may_use_http:
                break
            try:
                resp = self._probe(scheme)
            except errors as exc:
                last = exc
                if scheme == "https" and _looks_like_tls(exc):
                    tls_error = exc
                continue
            if scheme == "http" and resp.status_code == 400 \
                    and "docker-distribution-api-version" not in resp.headers:
                break  # a TLS server refusing plain http
            with self._lock:
                self.scheme = scheme
            a = self.authorizer("")
            if resp.status_code == 401:
                a.learn(resp.headers.get("www-authenticate"))
            return f"{scheme}://{self.host}"
        if tls_error is not None:
            raise InsecureRefused(
                f"{self.host}: TLS failed ({_short(tls_error)}); trust its CA with --cert-dir "
                "(or certs.d), or, to skip verification, mark it insecure in registries.conf "
                "or pass --tls-verify=false")
        raise RegistryUnavailable(f"{self.host}: cannot reach the registry: {_short(last)}")

    def _probe(self, scheme: str) -> Any:
        """GET /v2/. A registry that may be plain http is first tried over https
        without the system CAs: a plain-http server fails the handshake before
        any certificate is checked; a TLS one fails verification, and is asked
        again once the CAs are loaded."""
        url = f"{scheme}://{self.host}/v2/"
        if scheme != "https" or not self.may_use_http or self._cas_loaded:
            return self.http.get(url)
        try:
            return self.http.get(url, extensions={_LAZY_CAS: True})
        except _transport_errors() as exc:
            if "certificate verify failed" not in str(exc).lower():
                raise
        self._load_cas()
        return self.http.get(url)

    def request(self, method: str, url: str, what: str, scopes: tuple[str, ...], *,
                headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200,),
                stream: bool = False, content: Any = None, retry: bool = True,
                params: dict[str, str] | None = None) -> Any:
        """One API call (URL relative to the base), with auth and retries.

        Returns the response (open when `stream`, the caller closes it); raises
        a RegistryError for a status not in `ok` (404 answers a HEAD as None).
        """
        errors = _transport_errors()
        base = self.base()
        full = url if url.startswith(("http://", "https://")) else base + url
        if params:
            full += ("&" if "?" in full else "?") + urlencode(params)
        a = self.authorizer(scopes[0].split(":")[1] if scopes else "")
        attempts = 1 + (self.options.retries if retry else 0)
        delay = 0.25
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            hdrs = dict(headers or {})
            try:
                authz = a.header(scopes)
            except Unauthorized as exc:
                raise Unauthorized(f"{what}: {exc}", exc.status, exc.codes) from None
            if authz:
                hdrs["Authorization"] = authz
            body = content() if callable(content) else content
            try:
                req = self.http.build_request(method, full, headers=hdrs, content=body)
                resp = self.http.send(req, stream=stream)
            except errors as exc:
                if attempt < attempts:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise RegistryUnavailable(f"{what}: {method} {_path(full)}: {_short(exc)}") \
                    from None
            status = resp.status_code
            if status in ok:
                return resp
            data = b"" if method == "HEAD" else resp.read()
            resp.close()
            if status == 401 and not refreshed:
                refreshed = True
                attempt -= 1
                a.learn(resp.headers.get("www-authenticate"))
                if a.challenge is not None:
                    a.header(scopes, fresh=True)
                    continue
            if status in _RETRY_STATUS and attempt < attempts:
                time.sleep(delay)
                delay *= 2
                continue
            err = from_status(f"{what}: {method} {_path(full)}", status, resp.reason_phrase,
                              data)
            if isinstance(err, Unauthorized) and a.creds is None:
                err = Unauthorized(str(err) + f" (log in with: corral login {self.host})",
                                   err.status, err.codes)
            raise err

    # -- pull -----------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str, what: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest); digest verified when `reference` is one."""
        from corral.oci import digest as digests

        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", what,
                            (f"repository:{repo}:pull",),
                            headers={"Accept": MANIFEST_ACCEPT}, stream=True)
        try:
            length = int(resp.headers.get("content-length") or 0)
            if length > MAX_MANIFEST:
                raise RegistryError(f"{what}: manifest of {length} bytes is too large")
            data = b""
            for chunk in resp.iter_raw():
                data += chunk
                if len(data) > MAX_MANIFEST:
                    raise RegistryError(f"{what}: manifest is larger than {MAX_MANIFEST} bytes")
        finally:
            resp.close()
        media_type = (resp.headers.get("content-type") or "").split(";")[0].strip()
        if digests.is_valid(reference):
            digests.verify(data, reference, f"{what}: manifest")
            digest = reference
        else:
            digest = digests.of_bytes(data)
            sent = resp.headers.get("docker-content-digest")
            if sent and digests.is_valid(sent) and digests.algorithm(sent) == "sha256" \
                    and sent != digest:
                from corral.oci.digest import DigestMismatch

                raise DigestMismatch(f"{what}: manifest digest mismatch: the registry says "
                                     f"{sent}, the content is {digest}", sent, digest)
        return data, media_type, digest

    def get_blob_bytes(self, repo: str, digest: str, size: int, what: str,
                       limit: int = 16 << 20) -> bytes:
        from corral.oci import digest as digests

        if size > limit:
            raise RegistryError(f"{what}: blob {digest} is {size} bytes, more than {limit}")
        with self.open_blob(repo, digest, size, what) as reader:
            data = reader.read()
        digests.verify(data, digest, f"{what}: blob {digest}")
        return data

    def open_blob(self, repo: str, digest: str, size: int | None, what: str,
                  on_bytes: Callable[[int], None] | None = None, *,
                  offset: int = 0) -> BlobReader:
        """A blob's bytes from `offset` on (spec "Pulling blobs"; Range when offset > 0)."""
        return BlobReader(self, repo, digest, size, what, on_bytes, offset=offset)

    def head_blob(self, repo: str, digest: str, what: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", what,
                            (f"repository:{repo}:pull",), ok=(200, 404))
        resp.close()
        return bool(resp.status_code == 200)

    # -- push -----------------------------------------------------------------

    def _push_scopes(self, repo: str, mount_from: str | None = None) -> tuple[str, ...]:
        scopes: tuple[str, ...] = (f"repository:{repo}:pull,push",)
        if mount_from:
            scopes += (f"repository:{mount_from}:pull",)
        return scopes

    def mount_blob(self, repo: str, digest: str, source_repo: str, what: str) -> str | None:
        """Cross-repository mount; True when mounted, else an upload location to use."""
        scopes = self._push_scopes(repo, source_repo)
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", what, scopes,
                            params={"mount": digest, "from": source_repo}, ok=(201, 202),
                            content=b"", headers={"Content-Length": "0"})
        resp.close()
        if resp.status_code == 201:
            return None
        return urljoin(str(resp.url), resp.headers["location"])

    def upload_blob(self, repo: str, digest: str, size: int, opener: Callable[[], BinaryIO],
                    what: str, location: str | None = None,
                    on_bytes: Callable[[int], None] | None = None) -> None:
        scopes = self._push_scopes(repo)
        attempts = 1 + self.options.retries
        for attempt in range(attempts):
            try:
                if location is None:
                    resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", what, scopes,
                                        ok=(202,), content=b"",
                                        headers={"Content-Length": "0"})
                    resp.close()
                    location = urljoin(str(resp.url), resp.headers["location"])
                if size > self.options.chunk_size:
                    self._upload_chunked(location, repo, digest, size, opener, what, on_bytes)
                else:
                    def body() -> Iterator[bytes]:
                        with opener() as f:
                            while chunk := f.read(CHUNK):
                                if on_bytes:
                                    on_bytes(len(chunk))
                                yield chunk
                    resp = self.request("PUT", location, what, scopes, ok=(201,),
                                        params={"digest": digest}, content=body, retry=False,
                                        headers={"Content-Type": "application/octet-stream",
                                                 "Content-Length": str(size)})
                    resp.close()
                return
            except RegistryUnavailable:
                if attempt + 1 >= attempts:
                    raise
                location = None
                time.sleep(0.25 * (2 ** attempt))

    def _upload_chunked(self, location: str, repo: str, digest: str, size: int,
                        opener: Callable[[], BinaryIO], what: str,
                        on_bytes: Callable[[int], None] | None) -> None:
        scopes = self._push_scopes(repo)
        chunk_size = self.options.chunk_size
        offset = 0
        with opener() as f:
            while offset < size:
                data = f.read(min(chunk_size, size - offset))
                if not data:
                    raise RegistryError(f"{what}: blob {digest} ended at {offset} of {size} bytes")
                resp = self.request("PATCH", location, what, scopes, ok=(202,), content=data,
                                    retry=False,
                                    headers={"Content-Type": "application/octet-stream",
                                             "Content-Range": f"{offset}-{offset + len(data) - 1}",
                                             "Content-Length": str(len(data))})
                resp.close()
                location = urljoin(str(resp.url), resp.headers["location"])
                offset += len(data)
                if on_bytes:
                    on_bytes(len(data))
        resp = self.request("PUT", location, what, scopes, ok=(201,), params={"digest": digest},
                            content=b"", retry=False, headers={"Content-Length": "0"})
        resp.close()

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str,
                     what: str) -> str:
        from corral.oci import digest as digests

        resp = self.request("PUT", f"/v2/{repo}/manifests/{reference}", what,
                            self._push_scopes(repo), ok=(201, 200), content=data,
                            headers={"Content-Type": media_type})
        resp.close()
        return resp.headers.get("docker-content-digest") or digests.of_bytes(data)


class BlobReader:
    """A blob's bytes as a file: resumes broken transfers with Range requests."""

    def __init__(self, registry: Registry, repo: str, digest: str, size: int | None, what: str,
                 on_bytes: Callable[[int], None] | None = None, *, offset: int = 0) -> None:
        self.registry = registry
        self.repo = repo
        self.digest = digest
        self.size = size
        self.what = what
        self.on_bytes = on_bytes
        self.offset = offset
        self._resp: Any = None
        self._iter: Iterator[bytes] | None = None
        self._buf = b""
        self._skip = 0
        self._failures = 0
        self._done = False
        self._aborted = False

    def _open(self) -> None:
        headers = {}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
        resp = self.registry.request("GET", f"/v2/{self.repo}/blobs/{self.digest}",
                                     f"{self.what}: blob {self.digest}",
                                     (f"repository:{self.repo}:pull",), headers=headers,
                                     ok=(200, 206), stream=True)
        if self.offset and resp.status_code == 200:
            self._skip = self.offset      # the server ignored the range
        elif self.offset:
            start = (resp.headers.get("content-range") or "").partition(" ")[2].partition("-")[0]
            if start != str(self.offset):
                resp.close()
                raise RegistryError(f"{self.what}: blob {self.digest}: asked for bytes from "
                                    f"{self.offset}, the registry sent "
                                    f"{resp.headers.get('content-range')!r}")
        self._resp = resp
        self._iter = resp.iter_raw()

    def abort(self) -> None:
        """From another thread: end the transfer now (a blocked read returns, no retry)."""
        self._aborted = True
        resp = self._resp
        stream = resp.extensions.get("network_stream") if resp is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            import socket

            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _check_aborted(self) -> None:
        if self._aborted:
            self._drop()
            raise RegistryUnavailable(f"{self.what}: blob {self.digest}: transfer abandoned")

    def _next(self) -> bytes:
        errors = _transport_errors()
        while True:
            self._check_aborted()
            if self._iter is None:
                self._open()
            assert self._iter is not None
            try:
                chunk = next(self._iter, b"")
            except errors as exc:
                self._check_aborted()
                self._drop()
                self._failures += 1
                if self._failures > self.registry.options.retries:
                    raise RegistryUnavailable(f"{self.what}: blob {self.digest}: the transfer "
                                              f"broke {self._failures} times (last: "
                                              f"{_short(exc)})") from None
                time.sleep(0.1 * self._failures)
                continue
            if not chunk:
                self._check_aborted()
                self._drop()
                if self.size is not None and self.offset < self.size:
                    self._failures += 1      # the connection closed early
                    if self._failures > self.registry.options.retries:
                        raise RegistryUnavailable(f"{self.what}: blob {self.digest}: got "
                                                  f"{self.offset} of {self.size} bytes")
                    continue
                self._done = True
                return b""
            if self._skip:
                cut = min(self._skip, len(chunk))
                self._skip -= cut
                chunk = chunk[cut:]
                if not chunk:
                    continue
            if self.size is not None and self.offset + len(chunk) > self.size:
                chunk = chunk[:self.size - self.offset + 1]   # one byte too many: ingest fails
            self.offset += len(chunk)
            if self.on_bytes:
                self.on_bytes(len(chunk))
            return chunk

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._buf]
            self._buf = b""
            while not self._done and (chunk := self._next()):
                parts.append(chunk)
            return b"".join(parts)
        while not self._buf and not self._done:
            self._buf = self._next()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _drop(self) -> None:
        if self._resp is not None:
            try:
                self._resp.close()
            except Exception:  # noqa: BLE001, S110 - a broken connection
                pass
        self._resp = None
        self._iter = None

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:200]


def _looks_like_tls(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "ssl" in text or "tls" in text or "certificate" in text or "wrong version" in text


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.path + (("?" + parts.query) if parts.query and "digest=" in parts.query else "")
