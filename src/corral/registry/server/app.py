"""The distribution API's handlers, independent of the HTTP server.

`Registry.handle(Request) -> Response` implements spec.md's endpoints
(end-1 .. end-14, plus distribution's `_catalog`) over `RegistryStorage`.
The HTTP layer (`httpd.py`) only parses requests, streams bodies and writes
responses; tests can drive `handle` with in-memory requests.

Every response carries `Docker-Distribution-API-Version: registry/2.0`. Errors
are `RegistryError`s, written as the spec's `{"errors": [...]}` JSON.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from corral.errors import InvalidArgument
from corral.oci import digest as digests
from corral.oci import image as oci
from corral.registry.server import routes
from corral.registry.server.auth import Authenticator
from corral.registry.server.errors import RegistryError
from corral.registry.server.storage import (
    RegistryStorage,
    UploadRangeError,
    UploadUnknown,
)
from corral.registry.server.token import Access, TokenAuth, allowed

#: Manifests larger than this are refused with 413 (the spec asks for >= 4 MB).
MANIFEST_MAX = 4 << 20
#: Default and largest page for tags/list and _catalog without `n`.
PAGE_MAX = 10000
API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
OCTET_STREAM = "application/octet-stream"


@dataclass
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: BinaryIO | None = None

    def header(self, name: str) -> str | None:
        get = getattr(self.headers, "get", None)
        value = get(name) if get else None
        if value is None and isinstance(self.headers, dict):
            lowered = name.lower()
            for key, val in self.headers.items():
                if key.lower() == lowered:
                    return val
        return value

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def header_all(self, name: str) -> list[str]:
        """Every value of a header that may be repeated (`Accept`)."""
        get_all = getattr(self.headers, "get_all", None)
        if get_all is not None:
            return list(get_all(name) or [])
        value = self.header(name)
        return [value] if value is not None else []


def needed_access(method: str, route: routes.Route) -> list[Access]:
    """The token access a request needs (distribution's: pull, pull+push, delete, catalog)."""
    if route.kind == "base":
        return []
    if route.kind == "catalog":
        return [Access("registry", "catalog", ("*",))]
    if route.kind in ("upload_start", "upload") or (route.kind == "manifest" and method == "PUT"):
        return [Access("repository", route.name, ("pull", "push"))]
    if method == "DELETE":
        return [Access("repository", route.name, ("delete",))]
    return [Access("repository", route.name, ("pull",))]


def accepted_types(values: list[str]) -> frozenset[str] | None:
    """The media types of `Accept` headers (parameters such as q= ignored).

    None means anything: no `Accept` header, or a `*/*` / `application/*`
    wildcard (RFC 9110 12.5.1; distribution itself answers those with 404).
    """
    types: set[str] = set()
    for value in values:
        for item in value.split(","):
            media_type = item.split(";", 1)[0].strip().lower()
            if media_type in ("*/*", "application/*"):
                return None
            if media_type:
                types.add(media_type)
    return frozenset(types) if types else None


@dataclass
class FileBody:
    path: Path
    offset: int
    length: int


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: FileBody | None = None

    @property
    def content_length(self) -> int:
        return self.file.length if self.file is not None else len(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def error_response(err: RegistryError) -> Response:
    body = json.dumps(err.to_json()).encode()
    headers = [("Content-Type", "application/json"), API_VERSION_HEADER, *err.headers]
    return Response(err.status, headers, body)


def _json_response(status: int, value: object, content_type: str = "application/json",
                   headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(value).encode()
    return Response(status, [("Content-Type", content_type), *(headers or [])], body)


def _content_length(req: Request) -> int | None:
    value = req.header("Content-Length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise RegistryError("SIZE_INVALID", f"bad Content-Length {value[:50]!r}") from None
    if length < 0:
        raise RegistryError("SIZE_INVALID", f"bad Content-Length {value[:50]!r}")
    return length


def _has_body(req: Request) -> bool:
    if req.body is None:
        return False
    length = _content_length(req)
    if length is not None:
        return length > 0
    return (req.header("Transfer-Encoding") or "").lower().strip() == "chunked"


def _media_type(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One `bytes=` range of a `size`-byte blob -> (start, end inclusive); None for
    "serve the whole blob" (absent, malformed or multiple ranges); RegistryError 416
    if unsatisfiable."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise ValueError
            if size == 0:
                raise RegistryError("BLOB_UNKNOWN", "range not satisfiable", status=416,
                                    headers=[("Content-Range", f"bytes */{size}")])
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or (last and end < start):
        return None
    if start >= size:
        raise RegistryError("BLOB_UNKNOWN", "range not satisfiable", status=416,
                            headers=[("Content-Range", f"bytes */{size}")])
    return start, min(end, size - 1)


def _content_range(value: str) -> tuple[int, int]:
    """A PATCH's `Content-Range: <start>-<end>` (also `bytes <start>-<end>/<total>`)."""
    text = value.strip()
    if text.lower().startswith("bytes"):
        text = text[5:].strip().lstrip("=").strip()
        text = text.split("/", 1)[0]
    first, sep, last = text.partition("-")
    try:
        start, end = int(first), int(last)
    except ValueError:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"bad Content-Range {value[:80]!r}",
                            status=416) from None
    if not sep or start < 0 or end < start - 1:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"bad Content-Range {value[:80]!r}",
                            status=416)
    return start, end


class Registry:
    """The API over one storage root, with optional authentication."""

    def __init__(self, storage: RegistryStorage,
                 auth: Authenticator | TokenAuth | None = None) -> None:
        self.storage = storage
        self.auth = auth

    # -- entry point ---------------------------------------------------------

    def handle(self, req: Request) -> Response:
        try:
            auth = self.auth
            if auth is not None and not isinstance(auth, TokenAuth) \
                    and not auth.check(req.header("Authorization")):
                raise RegistryError("UNAUTHORIZED", headers=[
                    ("WWW-Authenticate", f'Basic realm="{auth.realm}"')])
            route = routes.match(req.path, req.method)
            if isinstance(auth, TokenAuth):
                req = self._authorize(auth, req, route)
            handler = getattr(self, f"_{route.kind}_{req.method.lower()}", None)
            if handler is None and req.method == "HEAD":
                handler = getattr(self, f"_{route.kind}_get")
            if handler is None:  # pragma: no cover - METHODS and the handlers agree
                raise RegistryError("UNSUPPORTED")
            response = handler(req, route)
        except RegistryError as err:
            response = error_response(err)
        response.headers.append(API_VERSION_HEADER)
        return response

    def _authorize(self, token: TokenAuth, req: Request, route: routes.Route) -> Request:
        """Bearer tokens: 401 with the scope this request needs unless the token grants it.

        A mount from a repository the token cannot pull from becomes a plain
        upload session (as distribution does)."""
        needed = needed_access(req.method, route)
        granted = token.grants(req.header("Authorization"))
        if granted is None:
            raise RegistryError("UNAUTHORIZED", headers=[
                ("WWW-Authenticate", token.challenge(needed))])
        if not allowed(granted, needed):
            raise RegistryError("UNAUTHORIZED", "insufficient scope: " + " ".join(
                a.scope() for a in needed), headers=[
                ("WWW-Authenticate", token.challenge(needed, insufficient=True))])
        source = req.param("from")
        if route.kind == "upload_start" and req.param("mount") and source \
                and not allowed(granted, [Access("repository", source, ("pull",))]):
            query = {k: v for k, v in req.query.items() if k not in ("mount", "from")}
            req = Request(req.method, req.path, query, req.headers, req.body)
        return req

    # -- base and catalog -----------------------------------------------------

    def _base_get(self, req: Request, route: routes.Route) -> Response:
        return _json_response(200, {})

    def _catalog_get(self, req: Request, route: routes.Route) -> Response:
        names = list(self.storage.repositories())
        page, link = self._paginate(req, names, "/v2/_catalog")
        return _json_response(200, {"repositories": page}, headers=link)

    def _paginate(self, req: Request, items: list[str], path: str
                  ) -> tuple[list[str], list[tuple[str, str]]]:
        last = req.param("last")
        n_text = req.param("n")
        if last:
            items = [i for i in items if i > last]
        if n_text is None:
            n = PAGE_MAX
        else:
            try:
                n = int(n_text)
                if n < 0:
                    raise ValueError
            except ValueError:
                raise RegistryError("UNSUPPORTED", f"bad n {n_text[:30]!r}", status=400) \
                    from None
        page = items[:n]
        headers: list[tuple[str, str]] = []
        if n > 0 and len(items) > n:
            query = urlencode({"n": n, "last": page[-1]})
            headers.append(("Link", f'<{path}?{query}>; rel="next"'))
        return page, headers

    # -- blobs ---------------------------------------------------------------

    def _blob_get(self, req: Request, route: routes.Route) -> Response:
        path = self.storage.blob_path(route.name, route.ref)
        if path is None:
            raise RegistryError("BLOB_UNKNOWN", f"blob {route.ref} unknown to {route.name}",
                                detail={"digest": route.ref})
        size = path.stat().st_size
        headers = [("Content-Type", OCTET_STREAM), ("Docker-Content-Digest", route.ref),
                   ("Accept-Ranges", "bytes"), ("ETag", f'"{route.ref}"'),
                   ("Cache-Control", "max-age=31536000")]
        span = None
        range_header = req.header("Range")
        if range_header and req.method == "GET":
            span = parse_range(range_header, size)
        if span is None:
            return Response(200, headers, file=FileBody(path, 0, size))
        start, end = span
        headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        return Response(206, headers, file=FileBody(path, start, end - start + 1))

    def _blob_delete(self, req: Request, route: routes.Route) -> Response:
        if not self.storage.unlink_blob(route.name, route.ref):
            raise RegistryError("BLOB_UNKNOWN", f"blob {route.ref} unknown to {route.name}",
                                detail={"digest": route.ref})
        return Response(202, [("Content-Length", "0")])

    # -- uploads -------------------------------------------------------------

    def _upload_location(self, name: str, upload_id: str) -> str:
        return f"/v2/{name}/blobs/uploads/{upload_id}"

    def _upload_headers(self, name: str, upload_id: str, size: int) -> list[tuple[str, str]]:
        return [("Location", self._upload_location(name, upload_id)),
                ("Range", f"0-{max(size - 1, 0)}"),
                ("Docker-Upload-UUID", upload_id)]

    def _created_blob(self, name: str, digest: str) -> Response:
        return Response(201, [("Location", f"/v2/{name}/blobs/{digest}"),
                              ("Docker-Content-Digest", digest)])

    def _upload_start_post(self, req: Request, route: routes.Route) -> Response:
        name = route.name
        mount = req.param("mount")
        if mount is not None:
            digest = routes.check_digest(mount)
            if self.storage.mount_blob(name, digest, req.param("from")):
                return self._created_blob(name, digest)
        digest_param = req.param("digest")
        if digest_param is not None and mount is None:
            digest = routes.check_digest(digest_param)
            empty = digests.of_bytes(b"", digests.algorithm(digest)) == digest
            if _has_body(req) or empty:
                length = _content_length(req)
                body = req.body if req.body is not None else io.BytesIO()
                try:
                    self.storage.put_blob(name, body, digest, length)
                except digests.DigestMismatch as exc:
                    raise RegistryError("DIGEST_INVALID", str(exc),
                                        detail={"digest": digest}) from None
                return self._created_blob(name, digest)
        algorithm = req.param("digest-algorithm") or digests.CANONICAL
        if algorithm not in digests.ALGORITHMS:
            raise RegistryError("DIGEST_INVALID", f"unsupported digest algorithm "
                                f"{algorithm[:40]!r} (sha256 or sha512)")
        upload_id = self.storage.start_upload(name, algorithm)
        size = 0
        if _has_body(req):  # a first chunk with the POST (allowed by distribution)
            with self.storage.open_upload(name, upload_id) as upload:
                size = upload.append(req.body)
        return Response(202, self._upload_headers(name, upload_id, size))

    def _open(self, route: routes.Route):  # type: ignore[no-untyped-def]
        try:
            return self.storage.open_upload(route.name, route.ref)
        except UploadUnknown:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"upload {route.ref} unknown to "
                                f"{route.name}", detail={"uuid": route.ref}) from None

    def _upload_get(self, req: Request, route: routes.Route) -> Response:
        with self._open(route) as upload:
            size = upload.size
        return Response(204, self._upload_headers(route.name, route.ref, size))

    def _append(self, req: Request, route: routes.Route, upload) -> None:  # type: ignore[no-untyped-def]
        start = None
        content_range = req.header("Content-Range")
        if content_range:
            start, end = _content_range(content_range)
            length = _content_length(req)
            if length is not None and length != end - start + 1:
                raise RegistryError("SIZE_INVALID", f"Content-Range {content_range!r} does "
                                    f"not match Content-Length {length}", status=416,
                                    headers=self._upload_headers(route.name, route.ref,
                                                                 upload.size))
        try:
            upload.append(req.body if _has_body(req) else None, start)
        except UploadRangeError as exc:
            raise RegistryError("BLOB_UPLOAD_INVALID", f"chunk starts at {start}, but the "
                                f"upload has {exc.size} bytes", status=416,
                                headers=self._upload_headers(route.name, route.ref,
                                                             exc.size)) from None

    def _upload_patch(self, req: Request, route: routes.Route) -> Response:
        with self._open(route) as upload:
            self._append(req, route, upload)
            size = upload.size
        return Response(202, self._upload_headers(route.name, route.ref, size))

    def _upload_put(self, req: Request, route: routes.Route) -> Response:
        digest_param = req.param("digest")
        if digest_param is None:
            raise RegistryError("DIGEST_INVALID", "the closing PUT needs ?digest=")
        digest = routes.check_digest(digest_param)
        with self._open(route) as upload:
            self._append(req, route, upload)
            if not upload.commit(digest):
                raise RegistryError("DIGEST_INVALID", f"the uploaded content does not match "
                                    f"{digest}", detail={"digest": digest})
        return self._created_blob(route.name, digest)

    def _upload_delete(self, req: Request, route: routes.Route) -> Response:
        with self._open(route):
            self.storage.cancel_upload_dir(route.ref)
        return Response(204)

    # -- manifests -----------------------------------------------------------

    def _resolve(self, route: routes.Route) -> str:
        if routes.is_digest(route.ref):
            return route.ref
        digest = self.storage.resolve_tag(route.name, route.ref)
        if digest is None:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest {route.name}:{route.ref} unknown",
                                detail={"tag": route.ref})
        return digest

    def _manifest_get(self, req: Request, route: routes.Route) -> Response:
        digest = self._resolve(route)
        found = self.storage.read_manifest(route.name, digest)
        if found is None:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest {route.name}@{digest} unknown",
                                detail={"digest": digest})
        media_type, path = found
        accepted = accepted_types(req.header_all("Accept"))
        if accepted is not None and media_type not in accepted:
            digest, media_type, path = self._negotiate(route, media_type, path, accepted)
        size = path.stat().st_size
        return Response(200, [("Content-Type", media_type), ("Docker-Content-Digest", digest),
                              ("ETag", f'"{digest}"')], file=FileBody(path, 0, size))

    def _negotiate(self, route: routes.Route, media_type: str, path: Path,
                   accepted: frozenset[str]) -> tuple[str, str, Path]:
        """The client does not accept the stored type: distribution's answers.

        A Docker manifest list asked for by tag gives its linux/amd64 manifest
        when the client takes that type; anything else is MANIFEST_UNKNOWN
        (404), with distribution's messages for OCI types.
        """
        if media_type == oci.DOCKER_MANIFEST_LIST and not routes.is_digest(route.ref):
            try:
                doc = json.loads(path.read_bytes())
                entries = doc.get("manifests") or []
            except (OSError, ValueError, AttributeError):
                entries = []
            for entry in entries:
                platform = (entry.get("platform") or {}) if isinstance(entry, dict) else {}
                if isinstance(platform, dict) and platform.get("os") == "linux" \
                        and platform.get("architecture") == "amd64":
                    digest = str(entry.get("digest") or "")
                    found = self.storage.read_manifest(route.name, digest) \
                        if routes.is_digest(digest) else None
                    if found is not None and found[0] in accepted:
                        return digest, found[0], found[1]
                    break
        messages = {
            oci.OCI_MANIFEST: "OCI manifest found, but accept header does not support OCI "
                              "manifests",
            oci.OCI_INDEX: "OCI index found, but accept header does not support OCI indexes",
        }
        raise RegistryError("MANIFEST_UNKNOWN", messages.get(
            media_type, f"{media_type} manifest found, but accept header does not support it"),
            detail={"mediaType": media_type})

    def _manifest_put(self, req: Request, route: routes.Route) -> Response:
        name = route.name
        length = _content_length(req)
        if length is not None and length > MANIFEST_MAX:
            raise RegistryError("SIZE_INVALID", f"manifest of {length} bytes is larger than "
                                f"{MANIFEST_MAX}", status=413)
        data = req.body.read(MANIFEST_MAX + 1) if req.body is not None else b""
        if len(data) > MANIFEST_MAX:
            raise RegistryError("SIZE_INVALID", f"manifest larger than {MANIFEST_MAX} bytes",
                                status=413)
        tags: list[str] = []
        if routes.is_digest(route.ref):
            digest = route.ref
            actual = digests.of_bytes(data, digests.algorithm(digest))
            if actual != digest:
                raise RegistryError("DIGEST_INVALID", f"manifest digest is {actual}, not "
                                    f"{digest}", detail={"digest": digest})
            for tag in req.query.get("tag", []):
                tags.append(routes.check_tag(tag))
        else:
            digest = digests.of_bytes(data)
            tags.append(route.ref)
        media_type, doc = self._validate_manifest(name, data, _media_type(
            req.header("Content-Type")))
        headers = [("Location", f"/v2/{name}/manifests/{digest}"),
                   ("Docker-Content-Digest", digest)]
        referrer_of = None
        subject = doc.get("subject")
        if isinstance(subject, dict):
            descriptor: dict = {"mediaType": media_type, "digest": digest, "size": len(data)}
            artifact_type = doc.get("artifactType")
            if not artifact_type and "config" in doc:
                artifact_type = doc["config"].get("mediaType")
            if artifact_type:
                descriptor["artifactType"] = artifact_type
            if doc.get("annotations"):
                descriptor["annotations"] = doc["annotations"]
            referrer_of = (subject["digest"], descriptor)
            headers.append(("OCI-Subject", subject["digest"]))
        self.storage.put_manifest(name, data, digest, media_type, tags, referrer_of)
        if routes.is_digest(route.ref) and tags:
            headers.append(("OCI-Tag", ", ".join(tags)))
        return Response(201, headers)

    def _validate_manifest(self, name: str, data: bytes, content_type: str | None
                           ) -> tuple[str, dict]:
        """(media type to serve it with, the JSON document); MANIFEST_INVALID or
        MANIFEST_BLOB_UNKNOWN otherwise."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError("MANIFEST_INVALID", f"manifest is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RegistryError("MANIFEST_INVALID", "manifest is not a JSON object")
        declared = doc.get("mediaType")
        known = oci.MANIFEST_TYPES | oci.INDEX_TYPES
        if declared is not None and content_type in known and declared != content_type:
            raise RegistryError("MANIFEST_INVALID", f"Content-Type {content_type} does not "
                                f"match the manifest's mediaType {declared!r}")
        try:
            parsed = oci.parse_manifest(data, content_type)
        except InvalidArgument as exc:
            raise RegistryError("MANIFEST_INVALID", str(exc)) from None
        missing: list[str] = []
        if isinstance(parsed, oci.Manifest):
            media_type = declared or (content_type if content_type in oci.MANIFEST_TYPES
                                      else oci.OCI_MANIFEST)
            for desc in (parsed.config, *parsed.layers):
                if desc.urls:  # foreign / non-distributable layers live elsewhere
                    continue
                if not self.storage.blob_linked(name, desc.digest):
                    missing.append(desc.digest)
        else:
            media_type = declared or (content_type if content_type in oci.INDEX_TYPES
                                      else oci.OCI_INDEX)
            for desc in parsed.manifests:
                if not self.storage.has_manifest(name, desc.digest):
                    missing.append(desc.digest)
        if missing:
            first, *rest = missing
            raise RegistryError(
                "MANIFEST_BLOB_UNKNOWN", f"blob {first} unknown to {name}",
                detail={"digest": first},
                extra=[RegistryError("MANIFEST_BLOB_UNKNOWN", f"blob {d} unknown to {name}",
                                     detail={"digest": d}).entries()[0] for d in rest])
        return media_type, doc

    def _manifest_delete(self, req: Request, route: routes.Route) -> Response:
        if routes.is_digest(route.ref):
            if not self.storage.delete_manifest(route.name, route.ref):
                raise RegistryError("MANIFEST_UNKNOWN", f"manifest {route.name}@{route.ref} "
                                    "unknown", detail={"digest": route.ref})
        elif not self.storage.delete_tag(route.name, route.ref):
            raise RegistryError("MANIFEST_UNKNOWN", f"tag {route.name}:{route.ref} unknown",
                                detail={"tag": route.ref})
        return Response(202, [("Content-Length", "0")])

    # -- discovery -----------------------------------------------------------

    def _tags_get(self, req: Request, route: routes.Route) -> Response:
        tags = self.storage.tags(route.name)
        if tags is None:
            raise RegistryError("NAME_UNKNOWN", f"repository {route.name} not known",
                                detail={"name": route.name})
        page, link = self._paginate(req, tags, f"/v2/{quote(route.name)}/tags/list")
        return _json_response(200, {"name": route.name, "tags": page}, headers=link)

    def _referrers_get(self, req: Request, route: routes.Route) -> Response:
        descriptors = self.storage.referrers(route.name, route.ref)
        headers = []
        artifact_type = req.param("artifactType")
        if artifact_type is not None:
            descriptors = [d for d in descriptors if d.get("artifactType") == artifact_type]
            headers.append(("OCI-Filters-Applied", "artifactType"))
        index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": descriptors}
        return _json_response(200, index, oci.OCI_INDEX, headers)
