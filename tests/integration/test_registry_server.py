"""`corral registry serve` over real HTTP on 127.0.0.1: the distribution spec's
pull, push (monolithic, single POST, chunked with Content-Range and streamed
chunked bodies, 416 out of order, cross-mount), discovery (tags with n/last and
Link, referrers with artifactType), deletes, error codes, sha512, Range,
keep-alive, basic auth (plain and htpasswd/bcrypt), TLS and the CLI itself.

The server runs in-process on a kernel-chosen port (one per test, stopped in
teardown); the CLI test starts `corral registry serve` as a subprocess. No
root needed; only 127.0.0.1 is used.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading

import pytest
from tests.support.registry_server import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    ServeProcess,
    descriptor,
    image,
    sha256,
    sha512,
)

from corral.registry.server import HtpasswdAuth, PlainAuth, RegistryServer, tls_context
from corral.registry.server.auth import make_htpasswd_line


@pytest.fixture(autouse=True)
def _needs_root():  # override the runtime suite's root/busybox requirement: plain HTTP
    yield


@pytest.fixture
def server(tmp_path):
    srv = RegistryServer(tmp_path / "registry", "127.0.0.1:0")
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def client(server):
    c = Client(*server.address)
    yield c
    c.close()


# -- base, pull, push ----------------------------------------------------------

def test_base_endpoint(client):
    r = client.request("GET", "/v2/")
    assert r.status == 200
    assert r.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert client.request("GET", "/v2").status == 200


def test_monolithic_post_put_then_get_and_head(client):
    data = os.urandom(300_000)
    digest = client.push_blob("corral-test/a", data)
    r = client.request("HEAD", f"/v2/corral-test/a/blobs/{digest}")
    assert r.status == 200 and r.body == b""
    assert r.header("Content-Length") == str(len(data))
    assert r.header("Docker-Content-Digest") == digest
    r = client.request("GET", f"/v2/corral-test/a/blobs/{digest}")
    assert r.status == 200 and r.body == data
    assert r.header("Docker-Content-Digest") == digest
    # not linked into another repository
    r = client.request("GET", f"/v2/corral-test/b/blobs/{digest}")
    assert r.status == 404 and r.codes() == ["BLOB_UNKNOWN"]
    assert client.connections == 1  # all on one keep-alive connection


def test_single_post_monolithic(client):
    data = b"single post"
    digest = sha256(data)
    r = client.request("POST", f"/v2/r/blobs/uploads/?digest={digest}", data,
                       {"Content-Type": "application/octet-stream"})
    assert r.status == 201
    assert r.header("Location") == f"/v2/r/blobs/{digest}"
    assert client.request("GET", f"/v2/r/blobs/{digest}").body == data
    bad = sha256(b"other")
    r = client.request("POST", f"/v2/r/blobs/uploads/?digest={bad}", data)
    assert r.status == 400 and r.codes() == ["DIGEST_INVALID"]
    assert client.request("HEAD", f"/v2/r/blobs/{bad}").status == 404


def test_chunked_upload_with_content_range_and_out_of_order_416(client):
    data = os.urandom(25_000)
    r = client.request("POST", "/v2/r/blobs/uploads/", b"", {"Content-Length": "0"})
    assert r.status == 202
    location = r.header("Location")
    assert r.header("Docker-Upload-UUID") in location
    r = client.request("PATCH", location, data[:10_000],
                       {"Content-Range": "0-9999", "Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.header("Range") == "0-9999"
    location = r.header("Location")
    # out of order: skips ahead
    r = client.request("PATCH", location, data[15_000:20_000], {"Content-Range": "15000-19999"})
    assert r.status == 416
    assert r.header("Range") == "0-9999"
    # a repeated chunk is out of order too
    r = client.request("PATCH", location, data[:10_000], {"Content-Range": "0-9999"})
    assert r.status == 416
    r = client.request("GET", location)
    assert r.status == 204 and r.header("Range") == "0-9999"
    assert r.header("Location") == location
    r = client.request("PATCH", location, data[10_000:20_000], {"Content-Range": "10000-19999"})
    assert r.status == 202 and r.header("Range") == "0-19999"
    digest = sha256(data)
    # the last chunk with the closing PUT
    r = client.request("PUT", f"{location}?digest={digest}", data[20_000:],
                       {"Content-Range": f"20000-{len(data) - 1}"})
    assert r.status == 201, r.body
    assert r.header("Docker-Content-Digest") == digest
    assert client.request("GET", f"/v2/r/blobs/{digest}").body == data
    assert client.request("GET", location).status == 404  # the session is gone


def test_streamed_chunked_transfer_encoding_patch(client):
    data = os.urandom(100_000)
    location = client.request("POST", "/v2/r/blobs/uploads/").header("Location")
    r = client.request("PATCH", location, data[:60_000], chunked=True)
    assert r.status == 202 and r.header("Range") == "0-59999"
    r = client.request("PATCH", location, data[60_000:], chunked=True)
    assert r.status == 202 and r.header("Range") == f"0-{len(data) - 1}"
    r = client.request("PUT", f"{location}?digest={sha256(data)}")
    assert r.status == 201
    assert client.request("GET", f"/v2/r/blobs/{sha256(data)}").body == data
    assert client.connections == 1


def test_wrong_digest_stores_nothing(client, server):
    data = b"the real content"
    location = client.request("POST", "/v2/r/blobs/uploads/").header("Location")
    client.request("PATCH", location, data)
    wrong = sha256(b"something else")
    r = client.request("PUT", f"{location}?digest={wrong}")
    assert r.status == 400 and r.codes() == ["DIGEST_INVALID"]
    for digest in (wrong, sha256(data)):
        assert client.request("HEAD", f"/v2/r/blobs/{digest}").status == 404
    blobs = server.storage.content.blobs_dir
    assert not any(blobs.rglob("*") and (p for p in blobs.rglob("*") if p.is_file()))
    assert not any(server.storage.uploads_dir.iterdir())
    # no digest and a malformed digest
    location = client.request("POST", "/v2/r/blobs/uploads/").header("Location")
    assert client.request("PUT", location, b"x").codes() == ["DIGEST_INVALID"]
    location = client.request("POST", "/v2/r/blobs/uploads/").header("Location")
    r = client.request("PUT", f"{location}?digest=sha256:../../etc", b"x")
    assert r.status == 400 and r.codes() == ["DIGEST_INVALID"]
    r = client.request("PUT", f"{location}?digest=md5:abc", b"x")
    assert r.status == 400


def test_cancel_upload_and_unknown_upload(client):
    location = client.request("POST", "/v2/r/blobs/uploads/").header("Location")
    assert client.request("DELETE", location).status == 204
    r = client.request("PATCH", location, b"data")
    assert r.status == 404 and r.codes() == ["BLOB_UPLOAD_UNKNOWN"]
    assert client.request("GET", "/v2/r/blobs/uploads/" + "0" * 32).status == 404
    assert client.request("GET", "/v2/r/blobs/uploads/not-an-id").status == 404
    # a session belongs to its repository
    location = client.request("POST", "/v2/r/blobs/uploads/").header("Location")
    other = location.replace("/v2/r/", "/v2/s/")
    assert client.request("PATCH", other, b"x").codes() == ["BLOB_UPLOAD_UNKNOWN"]


def test_sha512_blob_and_manifest(client):
    data = os.urandom(5000)
    digest = sha512(data)
    r = client.request("POST", "/v2/r/blobs/uploads/?digest-algorithm=sha512")
    assert r.status == 202
    location = r.header("Location")
    client.request("PATCH", location, data[:2000], {"Content-Range": "0-1999"})
    r = client.request("PUT", f"{location}?digest={digest}", data[2000:])
    assert r.status == 201
    assert client.request("GET", f"/v2/r/blobs/{digest}").body == data
    # a sha512 upload closed with a sha256 digest works too (rehashed)
    location = client.request("POST", "/v2/r/blobs/uploads/?digest-algorithm=sha512"
                              ).header("Location")
    assert client.request("PUT", f"{location}?digest={sha256(data)}", data).status == 201
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    client.push_blob("r", config, sha512(config))
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": sha512(config), "size": len(config)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": digest, "size": len(data)}]}
    body = json.dumps(doc).encode()
    r = client.push_manifest("r", sha512(body), body)
    assert r.status == 201, r.body
    assert r.header("Docker-Content-Digest") == sha512(body)
    r = client.request("GET", f"/v2/r/manifests/{sha512(body)}")
    assert r.body == body and r.header("Content-Type") == OCI_MANIFEST
    assert client.request("POST", "/v2/r/blobs/uploads/?digest-algorithm=md5").status == 400


def test_range_requests(client):
    data = bytes(range(256)) * 40
    digest = client.push_blob("r", data)
    path = f"/v2/r/blobs/{digest}"
    r = client.request("GET", path, headers={"Range": "bytes=100-199"})
    assert r.status == 206 and r.body == data[100:200]
    assert r.header("Content-Range") == f"bytes 100-199/{len(data)}"
    r = client.request("GET", path, headers={"Range": "bytes=10000-"})
    assert r.status == 206 and r.body == data[10000:]
    r = client.request("GET", path, headers={"Range": "bytes=-24"})
    assert r.status == 206 and r.body == data[-24:]
    r = client.request("GET", path, headers={"Range": "bytes=99999-"})
    assert r.status == 416 and r.header("Content-Range") == f"bytes */{len(data)}"
    r = client.request("GET", path, headers={"Range": "bytes=0-1,5-6"})  # multi: whole blob
    assert r.status == 200 and r.body == data
    assert client.connections == 1


def test_cross_repository_mount(client):
    data = b"shared layer"
    digest = client.push_blob("src/repo", data)
    r = client.request("POST", f"/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo")
    assert r.status == 201
    assert r.header("Location") == f"/v2/dst/repo/blobs/{digest}"
    assert r.header("Docker-Content-Digest") == digest
    assert client.request("GET", f"/v2/dst/repo/blobs/{digest}").body == data
    # not in `from`: an upload session instead
    missing = sha256(b"nowhere")
    r = client.request("POST", f"/v2/dst/repo/blobs/uploads/?mount={missing}&from=src/repo")
    assert r.status == 202 and "/blobs/uploads/" in r.header("Location")
    r = client.request("POST", f"/v2/third/blobs/uploads/?mount={digest}&from=elsewhere")
    assert r.status == 202


# -- manifests -------------------------------------------------------------------

def test_manifest_put_get_head_by_tag_and_digest(client):
    _doc, data, digest = image(client, "corral-test/img", "v1")
    for ref in ("v1", digest):
        r = client.request("GET", f"/v2/corral-test/img/manifests/{ref}",
                           headers={"Accept": OCI_MANIFEST})
        assert r.status == 200 and r.body == data  # the exact bytes
        assert r.header("Content-Type") == OCI_MANIFEST
        assert r.header("Docker-Content-Digest") == digest
        r = client.request("HEAD", f"/v2/corral-test/img/manifests/{ref}")
        assert r.status == 200 and r.header("Content-Length") == str(len(data))
    assert client.request("GET", "/v2/corral-test/img/manifests/nope").codes() == [
        "MANIFEST_UNKNOWN"]
    assert client.request("HEAD", f"/v2/corral-test/img/manifests/{sha256(b'x')}").status == 404
    assert client.request("GET", "/v2/never/pushed/manifests/latest").status == 404


def test_manifest_put_by_digest_with_tags(client):
    _doc, data, digest = image(client, "r")
    r = client.request("PUT", f"/v2/r/manifests/{digest}?tag=a&tag=b", data,
                       {"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    assert r.header("OCI-Tag") == "a, b"
    assert client.request("GET", "/v2/r/tags/list").json()["tags"] == ["a", "b"]
    r = client.request("PUT", f"/v2/r/manifests/{sha256(b'other')}", data,
                       {"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and r.codes() == ["DIGEST_INVALID"]


def test_manifest_errors(client):
    r = client.push_manifest("r", "t", b"{not json")
    assert r.status == 400 and r.codes() == ["MANIFEST_INVALID"]
    r = client.push_manifest("r", "t", {"schemaVersion": 2, "mediaType": OCI_MANIFEST})
    assert r.status == 400 and r.codes() == ["MANIFEST_INVALID"]
    r = client.push_manifest("r", "t", {"schemaVersion": 1, "name": "x", "tag": "t"},
                             "application/vnd.docker.distribution.manifest.v1+json")
    assert r.status == 400 and r.codes() == ["MANIFEST_INVALID"]
    layer, config = b"absent layer", b"{}"
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(OCI_CONFIG, config),
           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)]}
    r = client.push_manifest("r", "t", doc)
    assert r.status == 400
    assert r.codes() == ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"]
    details = {e["detail"]["digest"] for e in r.json()["errors"]}
    assert details == {sha256(layer), sha256(config)}
    # Content-Type and mediaType disagree
    client.push_blob("r", config)
    client.push_blob("r", layer)
    r = client.push_manifest("r", "t", doc, OCI_INDEX)
    assert r.status == 400 and r.codes() == ["MANIFEST_INVALID"]
    assert client.push_manifest("r", "t", doc).status == 201
    # an index whose child is unknown
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"child"), "size": 5}]}
    r = client.push_manifest("r", "idx", index, OCI_INDEX)
    assert r.status == 400 and r.codes() == ["MANIFEST_BLOB_UNKNOWN"]
    # too big
    r = client.push_manifest("r", "big", b" " * (4 << 20) + b"{}")
    assert r.status == 413
    assert client.request("GET", "/v2/r/tags/list").json()["tags"] == ["t"]


def test_index_and_docker_schema2(client):
    layer, config = b"docker layer", b'{"architecture":"amd64","os":"linux"}'
    client.push_blob("d", layer)
    client.push_blob("d", config)
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
           "config": descriptor(DOCKER_CONFIG, config),
           "layers": [descriptor(DOCKER_LAYER, layer)]}
    data = json.dumps(doc, indent=3).encode()
    r = client.push_manifest("d", "v2s2", data, DOCKER_MANIFEST)
    assert r.status == 201
    r = client.request("GET", "/v2/d/manifests/v2s2")
    assert r.header("Content-Type") == DOCKER_MANIFEST and r.body == data
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha256(data),
                            "size": len(data),
                            "platform": {"architecture": "amd64", "os": "linux"}}]}
    r = client.push_manifest("d", "multi", index, OCI_INDEX)
    assert r.status == 201, r.body
    assert client.request("GET", "/v2/d/manifests/multi").header("Content-Type") == OCI_INDEX


# -- discovery --------------------------------------------------------------------

def test_tags_list_pagination(client):
    _doc, data, _digest = image(client, "p")
    tags = ["b", "A", "a", "c", "1.0", "latest", "_x"]
    for tag in tags:
        assert client.push_manifest("p", tag, data).status == 201
    ordered = sorted(tags)
    assert client.request("GET", "/v2/p/tags/list").json() == {"name": "p", "tags": ordered}
    r = client.request("GET", "/v2/p/tags/list?n=3")
    assert r.json()["tags"] == ordered[:3]
    link = r.header("Link")
    assert link == f'</v2/p/tags/list?n=3&last={ordered[2]}>; rel="next"'
    seen = list(r.json()["tags"])
    while link:
        url = link[1:link.index(">")]
        r = client.request("GET", url)
        seen += r.json()["tags"]
        link = r.header("Link")
    assert seen == ordered
    r = client.request("GET", "/v2/p/tags/list?n=0")
    assert r.json()["tags"] == [] and r.header("Link") is None
    r = client.request("GET", "/v2/p/tags/list?last=b")
    assert r.json()["tags"] == [t for t in ordered if t > "b"]
    r = client.request("GET", f"/v2/p/tags/list?n=2&last={ordered[-2]}")
    assert r.json()["tags"] == ordered[-1:] and r.header("Link") is None
    r = client.request("GET", "/v2/unknown/tags/list")
    assert r.status == 404 and r.codes() == ["NAME_UNKNOWN"]
    assert client.request("GET", "/v2/p/tags/list?n=-1").status == 400
    assert client.request("GET", "/v2/_catalog").json() == {"repositories": ["p"]}


def test_referrers_api(client):
    _subject_doc, subject_data, subject = image(client, "ref", "base")
    empty = b"{}"
    client.push_blob("ref", empty)
    subject_desc = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_data)}
    pushed = {}
    for kind, notes in (("application/vnd.example.sbom", {"org.example": "sbom"}),
                              ("application/vnd.example.sig", None)):
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
               "config": {"mediaType": OCI_EMPTY, "digest": sha256(empty), "size": 2},
               "layers": [{"mediaType": OCI_EMPTY, "digest": sha256(empty), "size": 2}],
               "subject": subject_desc}
        if notes:
            doc["annotations"] = notes
        data = json.dumps(doc).encode()
        r = client.push_manifest("ref", sha256(data), data)
        assert r.status == 201 and r.header("OCI-Subject") == subject
        pushed[kind] = sha256(data)
    # artifactType from the config's media type when the manifest has none
    cfg = b'{"kind":"cfg"}'
    client.push_blob("ref", cfg)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor("application/vnd.example.config", cfg), "layers": [],
           "subject": subject_desc}
    data = json.dumps(doc).encode()
    assert client.push_manifest("ref", sha256(data), data).status == 201
    r = client.request("GET", f"/v2/ref/referrers/{subject}")
    assert r.status == 200 and r.header("Content-Type") == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    by_type = {d["artifactType"]: d for d in index["manifests"]}
    assert set(by_type) == {"application/vnd.example.sbom", "application/vnd.example.sig",
                            "application/vnd.example.config"}
    assert by_type["application/vnd.example.sbom"]["annotations"] == {"org.example": "sbom"}
    assert by_type["application/vnd.example.sbom"]["digest"] == pushed[
        "application/vnd.example.sbom"]
    r = client.request("GET", f"/v2/ref/referrers/{subject}?artifactType="
                       "application/vnd.example.sig")
    assert r.header("OCI-Filters-Applied") == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [pushed["application/vnd.example.sig"]]
    # a subject that does not exist (yet) is accepted; an unknown subject lists nothing
    missing = sha256(b"not pushed yet")
    doc = dict(doc, subject={"mediaType": OCI_MANIFEST, "digest": missing, "size": 1})
    data = json.dumps(doc).encode()
    assert client.push_manifest("ref", sha256(data), data).status == 201
    assert len(client.request("GET", f"/v2/ref/referrers/{missing}").json()["manifests"]) == 1
    r = client.request("GET", f"/v2/ref/referrers/{sha256(b'zzz')}")
    assert r.status == 200 and r.json()["manifests"] == []
    assert client.request("GET", "/v2/ref/referrers/sha256:bad").status == 400
    # deleting a referrer removes it from the list
    sig = pushed["application/vnd.example.sig"]
    assert client.request("DELETE", f"/v2/ref/manifests/{sig}").status == 202
    digests = [d["digest"] for d in
               client.request("GET", f"/v2/ref/referrers/{subject}").json()["manifests"]]
    assert sig not in digests and len(digests) == 2


# -- deletes ----------------------------------------------------------------------

def test_deletes(client):
    doc, data, digest = image(client, "del", "one")
    client.push_manifest("del", "two", data)
    assert client.request("DELETE", "/v2/del/manifests/one").status == 202
    assert client.request("GET", "/v2/del/manifests/one").status == 404
    assert client.request("GET", "/v2/del/manifests/two").status == 200
    assert client.request("DELETE", "/v2/del/manifests/one").status == 404
    assert client.request("DELETE", f"/v2/del/manifests/{digest}").status == 202
    for ref in ("two", digest):
        assert client.request("GET", f"/v2/del/manifests/{ref}").status == 404
    assert client.request("GET", "/v2/del/tags/list").json()["tags"] == []
    layer = doc["layers"][0]["digest"]
    assert client.request("DELETE", f"/v2/del/blobs/{layer}").status == 202
    r = client.request("GET", f"/v2/del/blobs/{layer}")
    assert r.status == 404 and r.codes() == ["BLOB_UNKNOWN"]
    assert client.request("DELETE", f"/v2/del/blobs/{layer}").status == 404


# -- names, methods, hostile paths -----------------------------------------------

@pytest.mark.parametrize("path", [
    "/v2/UPPER/tags/list", "/v2/a..b/tags/list", "/v2/../../etc/tags/list",
    "/v2/%2e%2e/x/tags/list", "/v2/a//b/tags/list", "/v2/-a/tags/list",
    "/v2/a/_layers/tags/list", "/v2/" + "a" * 256 + "/tags/list",
])
def test_invalid_names(client, server, path):
    r = client.request("GET", path)
    assert r.status in (400, 404)
    if r.status == 400:
        assert r.codes() == ["NAME_INVALID"]
    assert not (server.storage.root.parent / "etc").exists()


def test_invalid_tag_and_method(client):
    r = client.push_manifest("r", "-bad", b"{}")
    assert r.status == 400 and r.codes() == ["TAG_INVALID"]
    r = client.request("GET", "/v2/r/manifests/" + "t" * 129)
    assert r.status == 400
    r = client.request("POST", "/v2/r/manifests/latest", b"")
    assert r.status == 405 and r.codes() == ["UNSUPPORTED"]
    assert client.request("GET", "/v3/").status == 404


def test_unread_body_on_error_keeps_the_connection_usable(client):
    r = client.request("PUT", "/v2/UPPER/manifests/t", b"x" * 500_000)
    assert r.status == 400
    assert client.request("GET", "/v2/").status == 200


def test_concurrent_uploads_of_one_blob(server):
    data = os.urandom(2_000_000)
    results = []

    def push(i):
        c = Client(*server.address)
        try:
            results.append(c.push_blob(f"c/r{i % 3}", data))
        finally:
            c.close()

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [sha256(data)] * 8
    c = Client(*server.address)
    assert c.request("GET", f"/v2/c/r1/blobs/{sha256(data)}").body == data
    c.close()
    assert not any(server.storage.uploads_dir.iterdir())
    assert not any(server.storage.content.ingest_dir.iterdir())


# -- auth and TLS ------------------------------------------------------------------

def test_plain_basic_auth(tmp_path):
    srv = RegistryServer(tmp_path / "reg", "127.0.0.1:0", auth=PlainAuth("alice", "s3cret"))
    srv.start()
    try:
        c = Client(*srv.address)
        r = c.request("GET", "/v2/", auth=None)
        assert r.status == 401 and r.codes() == ["UNAUTHORIZED"]
        assert r.header("WWW-Authenticate") == 'Basic realm="corral-registry"'
        assert c.request("GET", "/v2/", auth=("alice", "wrong")).status == 401
        assert c.request("GET", "/v2/r/tags/list", auth=None).status == 401
        c.auth = ("alice", "s3cret")
        assert c.request("GET", "/v2/").status == 200
        c.push_blob("r", b"authorized")
        c.close()
    finally:
        srv.close()


def test_htpasswd_bcrypt_auth(tmp_path):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("# users\n" + make_htpasswd_line("bob", "pw1") + "\n"
                        + make_htpasswd_line("carol", "pw2").replace("$2b$", "$2y$", 1) + "\n")
    srv = RegistryServer(tmp_path / "reg", "127.0.0.1:0", auth=HtpasswdAuth(htpasswd))
    srv.start()
    try:
        c = Client(*srv.address)
        assert c.request("GET", "/v2/", auth=None).status == 401
        assert c.request("GET", "/v2/", auth=("bob", "nope")).status == 401
        assert c.request("GET", "/v2/", auth=("bob", "pw1")).status == 200
        assert c.request("GET", "/v2/", auth=("carol", "pw2")).status == 200
        assert c.request("GET", "/v2/", auth=("dave", "pw1")).status == 401
        c.close()
    finally:
        srv.close()


@pytest.fixture
def certificate(tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tls(tmp_path, certificate):
    srv = RegistryServer(tmp_path / "reg", "127.0.0.1:0", tls=tls_context(*certificate))
    srv.start()
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        c = Client(*srv.address, tls=True)
        assert c.request("GET", "/v2/").status == 200
        data = os.urandom(200_000)
        digest = c.push_blob("tls/r", data)
        assert c.request("GET", f"/v2/tls/r/blobs/{digest}").body == data
        r = c.request("GET", f"/v2/tls/r/blobs/{digest}", headers={"Range": "bytes=5-9"})
        assert r.body == data[5:10]
        c.close()
        # a plain-HTTP client gets no answer but does not hang the server
        plain = Client(*srv.address)
        with pytest.raises((OSError, http.client.HTTPException)):
            plain.request("GET", "/v2/")
        plain.close()
        c = Client(*srv.address, tls=True)
        assert c.request("GET", "/v2/").status == 200
        c.close()
    finally:
        srv.close()


# -- the CLI -------------------------------------------------------------------------

def test_cli_serve(tmp_path):
    proc = ServeProcess(tmp_path / "reg", "--user", "u:p")
    try:
        assert proc.host == "127.0.0.1"
        c = Client(proc.host, proc.port, auth=("u", "p"))
        assert c.request("GET", "/v2/").status == 200
        assert c.request("GET", "/v2/", auth=None).status == 401
        c.push_blob("cli/r", b"via the cli")
        c.close()
    finally:
        assert proc.stop() == 0
    assert (tmp_path / "reg" / "repositories" / "cli" / "r" / "_layers").is_dir()


def test_cli_refuses_bad_options(tmp_path):
    import sys

    from tests.support.registry_server import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    (tmp_path / "empty.pem").write_text("no certificates\n")
    for args in (["--tls-cert", "x"], ["--user", "nocolon"], ["--addr", "127.0.0.1:notaport"],
                 ["--htpasswd", str(tmp_path / "missing")],
                 ["--token-realm", "http://127.0.0.1:1/token"],
                 ["--token-service", "s", "--token-issuer", "i"],
                 ["--token-realm", "http://127.0.0.1:1/token", "--token-service", "s",
                  "--token-issuer", "i", "--token-rootcertbundle", str(tmp_path / "empty.pem")],
                 ["--user", "u:p", "--token-realm", "http://127.0.0.1:1/token"]):
        r = subprocess.run([sys.executable, "-m", "corral.cli.main", "registry", "serve",
                            "--root", str(tmp_path / "r"), *args],
                           capture_output=True, text=True, timeout=30, env=env, check=False)
        assert r.returncode == 125, (args, r.stderr)
        assert r.stderr.startswith("Error: ") and "Traceback" not in r.stderr


def test_manifest_accept_negotiation_over_http(server):
    """Accept split over two header lines is read whole; a type the client does
    not take is distribution's 404 MANIFEST_UNKNOWN."""
    c = Client(*server.address)
    _doc, data, digest = image(c, "corral-test/neg", "v1")
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        conn.putrequest("GET", "/v2/corral-test/neg/manifests/v1")
        conn.putheader("Accept", DOCKER_MANIFEST)
        conn.putheader("Accept", f"{OCI_INDEX}, {OCI_MANIFEST};q=0.9")
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 200 and r.read() == data
        assert r.getheader("Docker-Content-Digest") == digest
        conn.request("GET", "/v2/corral-test/neg/manifests/v1",
                     headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_INDEX}"})
        r = conn.getresponse()
        body = json.loads(r.read())
        assert r.status == 404 and body["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert "does not support OCI manifests" in body["errors"][0]["message"]
    finally:
        conn.close()
