"""Unit tests of the registry server without sockets: routing and validation,
Range/Content-Range parsing, the chunked body decoder, auth header parsing,
--addr parsing, and the API handlers driven with in-memory requests."""

from __future__ import annotations

import base64
import io
import json

import pytest
from tests.support.registry_server import OCI_CONFIG, OCI_MANIFEST, descriptor, sha256

from corral.registry.server import Registry, RegistryStorage, Request, parse_addr, routes
from corral.registry.server.app import _content_range, parse_range
from corral.registry.server.auth import PlainAuth, parse_basic
from corral.registry.server.errors import CODES, RegistryError
from corral.registry.server.httpd import BodyError, ChunkedBody, LengthBody

# -- routing -------------------------------------------------------------------

@pytest.mark.parametrize("path,method,kind,name,ref", [
    ("/v2/", "GET", "base", "", ""),
    ("/v2", "HEAD", "base", "", ""),
    ("/v2/_catalog", "GET", "catalog", "", ""),
    ("/v2/a/blobs/uploads/", "POST", "upload_start", "a", ""),
    ("/v2/a/b/blobs/uploads", "POST", "upload_start", "a/b", ""),
    ("/v2/a/blobs/uploads/" + "f" * 32, "PATCH", "upload", "a", "f" * 32),
    ("/v2/a/blobs/" + "sha256:" + "0" * 64, "GET", "blob", "a", "sha256:" + "0" * 64),
    ("/v2/a/manifests/latest", "PUT", "manifest", "a", "latest"),
    ("/v2/x/manifests/y/manifests/v1", "GET", "manifest", "x/manifests/y", "v1"),
    ("/v2/a/blobs/b/tags/list", "GET", "tags", "a/blobs/b", ""),
    ("/v2/a/referrers/sha512:" + "a" * 128, "GET", "referrers", "a", "sha512:" + "a" * 128),
])
def test_routes(path, method, kind, name, ref):
    assert routes.match(path, method) == routes.Route(kind, name, ref)


@pytest.mark.parametrize("path,method,code", [
    ("/v2/A/tags/list", "GET", "NAME_INVALID"),
    ("/v2/a/../b/tags/list", "GET", "NAME_INVALID"),
    ("/v2/./tags/list", "GET", "NAME_INVALID"),
    ("/v2/a/manifests/.hidden", "GET", "TAG_INVALID"),
    ("/v2/a/manifests/sha256:xyz", "GET", "DIGEST_INVALID"),
    ("/v2/a/blobs/sha256:../../etc", "GET", "NAME_UNKNOWN"),  # no route: 404
    ("/v2/a/blobs/md5:" + "0" * 32, "GET", "DIGEST_INVALID"),
    ("/v2/a/referrers/latest", "GET", "DIGEST_INVALID"),
    ("/v2/a/blobs/uploads/../x", "GET", "NAME_UNKNOWN"),
    ("/v2/a/../blobs/uploads/", "POST", "NAME_INVALID"),
    ("/v2/a/blobs/uploads/xyz", "GET", "BLOB_UPLOAD_UNKNOWN"),
    ("/v2/a/tags/list", "DELETE", "UNSUPPORTED"),
    ("/v2/a/manifests/t", "PATCH", "UNSUPPORTED"),
    ("/v1/", "GET", "NAME_UNKNOWN"),
])
def test_route_errors(path, method, code):
    with pytest.raises(RegistryError) as info:
        routes.match(path, method)
    assert info.value.code == code
    assert info.value.status == (404 if code in ("NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN")
                                 else 405 if code == "UNSUPPORTED" else 400)


@pytest.mark.parametrize("name,ok", [
    ("a", True), ("a/b/c", True), ("a.b_c__d-e--f", True), ("library/busybox", True),
    ("a" * 255, True), ("a" * 256, False), ("", False), ("A", False), ("a/", False),
    ("/a", False), ("a//b", False), ("a..b", False), ("a___b", False), ("-a", False),
    ("a-", False), ("_layers", False), ("a/_manifests", False), ("a b", False),
])
def test_name_grammar(name, ok):
    assert routes.is_valid_name(name) is ok


@pytest.mark.parametrize("tag,ok", [
    ("latest", True), ("_x", True), ("v1.2-rc_3", True), ("a" * 128, True), ("a" * 129, False),
    (".x", False), ("-x", False), ("a:b", False), ("a/b", False), ("", False),
])
def test_tag_grammar(tag, ok):
    assert routes.is_valid_tag(tag) is ok


def test_every_code_has_a_status_and_json_shape():
    for code, (status, message) in CODES.items():
        err = RegistryError(code)
        assert err.status == status and err.message == message
        assert err.to_json() == {"errors": [{"code": code, "message": message}]}
        assert code.isupper() or "_" in code


# -- ranges ------------------------------------------------------------------------

@pytest.mark.parametrize("header,expected", [
    ("bytes=0-9", (0, 9)), ("bytes=5-", (5, 99)), ("bytes=-10", (90, 99)),
    ("bytes=-1000", (0, 99)), ("bytes=90-500", (90, 99)), ("bytes=0-0", (0, 0)),
    ("bytes=0-1,4-5", None), ("items=0-1", None), ("bytes=9-3", None), ("bytes=x-", None),
    ("bytes=5", None),
])
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=5000-"])
def test_parse_range_unsatisfiable(header):
    with pytest.raises(RegistryError) as info:
        parse_range(header, 100)
    assert info.value.status == 416
    assert ("Content-Range", "bytes */100") in info.value.headers


@pytest.mark.parametrize("header,expected", [
    ("0-9", (0, 9)), ("10-19", (10, 19)), ("bytes 0-9/10", (0, 9)), ("bytes=3-4", (3, 4)),
])
def test_content_range(header, expected):
    assert _content_range(header) == expected


@pytest.mark.parametrize("header", ["", "abc", "5", "9-3", "-1-2"])
def test_content_range_bad(header):
    with pytest.raises(RegistryError) as info:
        _content_range(header)
    assert info.value.status == 416


# -- bodies ------------------------------------------------------------------------

def _read_all(body):
    out = b""
    while True:
        chunk = body.read(3)
        if not chunk:
            return out
        out += chunk


def test_chunked_body():
    raw = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    stream = io.BytesIO(raw)
    body = ChunkedBody(stream)
    assert _read_all(body) == b"hello world!"
    assert body.exhausted
    assert stream.read() == b"NEXT"  # the next request on the connection is untouched


@pytest.mark.parametrize("raw", [b"zz\r\nabc", b"5\r\nhel", b"3\r\nabcXX0\r\n\r\n",
                                 b"3\r\nabc"])
def test_chunked_body_errors(raw):
    with pytest.raises(BodyError):
        _read_all(ChunkedBody(io.BytesIO(raw)))


def test_length_body():
    stream = io.BytesIO(b"0123456789rest")
    body = LengthBody(stream, 10)
    assert _read_all(body) == b"0123456789" and body.exhausted
    assert stream.read() == b"rest"
    with pytest.raises(BodyError):
        _read_all(LengthBody(io.BytesIO(b"short"), 10))


# -- auth and addresses ---------------------------------------------------------------

def _basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_parse_basic_and_plain_auth():
    assert parse_basic(_basic("u", "p:with:colons")) == ("u", "p:with:colons")
    assert parse_basic("Bearer xyz") is None
    assert parse_basic("Basic !!!") is None
    assert parse_basic(None) is None
    auth = PlainAuth.from_spec("u:p")
    assert auth.check(_basic("u", "p"))
    assert not auth.check(_basic("u", "q")) and not auth.check(_basic("v", "p"))
    with pytest.raises(Exception, match="USER:PASSWORD"):
        PlainAuth.from_spec("nocolon")


@pytest.mark.parametrize("addr,expected", [
    ("127.0.0.1:5000", ("127.0.0.1", 5000)), (":6000", ("127.0.0.1", 6000)),
    ("localhost", ("localhost", 5000)), ("[::1]:7000", ("::1", 7000)), ("::1", ("::1", 5000)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
])
def test_parse_addr(addr, expected):
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["host:port", "1.2.3.4:70000"])
def test_parse_addr_bad(addr):
    with pytest.raises(Exception, match="--addr"):
        parse_addr(addr)


# -- handlers, in memory -----------------------------------------------------------

@pytest.fixture
def registry(tmp_path):
    return Registry(RegistryStorage(tmp_path / "reg"))


def call(registry, method, path, body=b"", headers=None, query=None):
    headers = dict(headers or {})
    if body:
        headers.setdefault("Content-Length", str(len(body)))
    return registry.handle(Request(method, path, query or {}, headers, io.BytesIO(body)))


def codes(response):
    return [e["code"] for e in json.loads(response.body)["errors"]]


def push(registry, name, data):
    digest = sha256(data)
    r = call(registry, "POST", f"/v2/{name}/blobs/uploads/", data, query={"digest": [digest]})
    assert r.status == 201
    return digest


def test_handler_push_and_pull(registry):
    layer, config = b"layer", b"{}"
    push(registry, "a", layer)
    push(registry, "a", config)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(OCI_CONFIG, config),
           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)]}
    data = json.dumps(doc).encode()
    r = call(registry, "PUT", "/v2/a/manifests/v1", data, {"Content-Type": OCI_MANIFEST})
    assert r.status == 201 and r.header("Docker-Content-Digest") == sha256(data)
    r = call(registry, "GET", "/v2/a/manifests/v1")
    assert r.status == 200 and r.file.path.read_bytes() == data
    assert r.header("Content-Type") == OCI_MANIFEST
    assert r.header("Docker-Distribution-API-Version") == "registry/2.0"


def test_handler_errors(registry):
    assert codes(call(registry, "GET", "/v2/a/blobs/" + sha256(b"x"))) == ["BLOB_UNKNOWN"]
    assert codes(call(registry, "PUT", "/v2/a/manifests/t", b"[]",
                      {"Content-Type": OCI_MANIFEST})) == ["MANIFEST_INVALID"]
    assert codes(call(registry, "GET", "/v2/a/tags/list")) == ["NAME_UNKNOWN"]
    r = call(registry, "POST", "/v2/a/blobs/uploads/", b"data",
             query={"digest": [sha256(b"other")]})
    assert r.status == 400 and codes(r) == ["DIGEST_INVALID"]
    r = call(registry, "POST", "/v2/a/blobs/uploads/", query={"digest": ["sha256:zz"]})
    assert r.status == 400


def test_handler_auth(tmp_path):
    registry = Registry(RegistryStorage(tmp_path / "reg"), PlainAuth("u", "p", realm="R"))
    r = call(registry, "GET", "/v2/")
    assert r.status == 401 and r.header("WWW-Authenticate") == 'Basic realm="R"'
    assert codes(r) == ["UNAUTHORIZED"]
    assert call(registry, "GET", "/v2/", headers={"Authorization": _basic("u", "p")}).status == 200


def test_empty_blob_single_post_and_upload_with_body_in_post(registry):
    empty = sha256(b"")
    r = call(registry, "POST", "/v2/a/blobs/uploads/", query={"digest": [empty]})
    assert r.status == 201
    # a digest without a body (not the empty blob): a session instead
    r = call(registry, "POST", "/v2/a/blobs/uploads/", query={"digest": [sha256(b"x")]})
    assert r.status == 202
    r = call(registry, "POST", "/v2/a/blobs/uploads/", b"first")
    assert r.status == 202 and r.header("Range") == "0-4"


# -- manifest Accept negotiation (distribution's GetManifest) ---------------------

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"


def _put_manifest(registry, name, ref, doc, media_type):
    data = json.dumps(doc).encode()
    r = call(registry, "PUT", f"/v2/{name}/manifests/{ref}", data, {"Content-Type": media_type})
    assert r.status == 201, r.body
    return sha256(data), data


def _image(registry, name, tag, media_type=OCI_MANIFEST, arch=b"amd64"):
    config = b'{"architecture":"' + arch + b'"}'
    push(registry, name, b"layer")
    push(registry, name, config)
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": descriptor(OCI_CONFIG if media_type == OCI_MANIFEST else DOCKER_CONFIG,
                                config),
           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", b"layer")]}
    return _put_manifest(registry, name, tag, doc, media_type)


@pytest.mark.parametrize("accept", [None, "*/*", f"{DOCKER_MANIFEST}, */*;q=0.1",
                                    f"{OCI_MANIFEST};q=0.5", f"{DOCKER_MANIFEST},{OCI_MANIFEST}"])
def test_accept_includes_the_stored_type_or_anything(registry, accept):
    digest, data = _image(registry, "a", "v1")
    r = call(registry, "GET", "/v2/a/manifests/v1", headers={"Accept": accept} if accept else {})
    assert r.status == 200 and r.file.path.read_bytes() == data
    assert r.header("Content-Type") == OCI_MANIFEST and r.header("Docker-Content-Digest") == digest


def test_an_oci_manifest_a_client_does_not_accept_is_unknown(registry):
    _image(registry, "a", "v1")
    for method in ("GET", "HEAD"):
        r = call(registry, method, "/v2/a/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
        assert r.status == 404
        if method == "GET":
            error = json.loads(r.body)["errors"][0]
            assert error["code"] == "MANIFEST_UNKNOWN"
            assert error["message"] == ("OCI manifest found, but accept header does not "
                                        "support OCI manifests")


def test_a_docker_list_by_tag_gives_its_linux_amd64_manifest_to_a_client_without_lists(
        registry):
    arm, _ = _image(registry, "a", "arm", DOCKER_MANIFEST, arch=b"arm64")
    amd, amd_data = _image(registry, "a", "amd", DOCKER_MANIFEST)
    entries = [{"mediaType": DOCKER_MANIFEST, "digest": d, "size": 1,
                "platform": {"os": "linux", "architecture": a}}
               for d, a in ((arm, "arm64"), (amd, "amd64"))]
    for entry, (d, a) in zip(entries, ((arm, "arm64"), (amd, "amd64"))):
        entry["size"] = len(call(registry, "GET", f"/v2/a/manifests/{d}").file.path.read_bytes())
    list_digest, _ = _put_manifest(registry, "a", "multi",
                                   {"schemaVersion": 2, "mediaType": DOCKER_LIST,
                                    "manifests": entries}, DOCKER_LIST)
    r = call(registry, "GET", "/v2/a/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 200 and r.header("Content-Type") == DOCKER_MANIFEST
    assert r.header("Docker-Content-Digest") == amd and r.file.path.read_bytes() == amd_data
    # a client taking lists gets the list; by digest there is no substitution
    r = call(registry, "GET", "/v2/a/manifests/multi",
             headers={"Accept": f"{DOCKER_LIST}, {DOCKER_MANIFEST}"})
    assert r.header("Docker-Content-Digest") == list_digest
    r = call(registry, "GET", f"/v2/a/manifests/{list_digest}",
             headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 404 and codes(r) == ["MANIFEST_UNKNOWN"]
    # nor for a client that takes neither (OCI only)
    r = call(registry, "GET", "/v2/a/manifests/multi", headers={"Accept": OCI_MANIFEST})
    assert r.status == 404 and codes(r) == ["MANIFEST_UNKNOWN"]
