"""The distribution client against an in-memory registry (tests/support/fake_registry.py).

No root: pulls go into an OCI layout directory (`oci:DIR`), pushes come from
one. The store destination (apply while downloading) is covered in
tests/integration/test_pull_push.py, real registries in tests/interop.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from tests.support.fake_registry import FakeRegistry, sha256

from corral.image import transports
from corral.oci.digest import DigestMismatch
from corral.registry.client import auth
from corral.registry.client.config import RegistryOptions, is_loopback, parse_conf
from corral.registry.client.errors import RegistryNotFound, RegistryUnavailable, Unauthorized

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def make_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """(gzipped tar, diff id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), sha256(raw)


def put_image(reg: FakeRegistry, repo: str, tag: str, *, layers: int = 2, size: int = 1000,
              docker: bool = False, arch: str = "amd64") -> tuple[str, list[bytes]]:
    """An image in the fake registry; (manifest digest, layer blobs)."""
    blobs, diff_ids = [], []
    for i in range(layers):
        blob, diff_id = make_layer({f"file{i}": os.urandom(size)})
        blobs.append(blob)
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    reg.add_blob(repo, config)
    layer_type = ("application/vnd.docker.image.rootfs.diff.tar.gzip" if docker
                  else "application/vnd.oci.image.layer.v1.tar+gzip")
    manifest = {
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {"mediaType": ("application/vnd.docker.container.image.v1+json" if docker
                                 else "application/vnd.oci.image.config.v1+json"),
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": reg.add_blob(repo, b), "size": len(b)}
                   for b in blobs]}
    data = json.dumps(manifest).encode()
    return reg.add_manifest(repo, tag, data, manifest["mediaType"]), blobs


def opts(**kw: object) -> RegistryOptions:
    o = RegistryOptions(retries=2, conf_path="/nonexistent", **kw)  # type: ignore[arg-type]
    return o


def pull(reg: FakeRegistry, name: str, out: Path, **kw: object) -> list[transports.CopiedImage]:
    src = transports.parse(f"docker://{reg.host}/{name}", registry=opts(**kw))
    return transports.copy(src, transports.parse(f"oci:{out}:x"))


def layout_blobs(out: Path) -> set[str]:
    d = out / "blobs" / "sha256"
    return {"sha256:" + p.name for p in d.iterdir() if not p.name.startswith(".")} \
        if d.is_dir() else set()


@pytest.fixture
def reg():
    with FakeRegistry() as r:
        yield r


# -- pull -------------------------------------------------------------------------


def test_pull_by_tag_and_digest(reg: FakeRegistry, tmp_path: Path) -> None:
    digest, blobs = put_image(reg, "app", "1")
    copied = pull(reg, "app:1", tmp_path / "a")
    assert copied[0].names == (f"{reg.host}/app:1",)
    assert {sha256(b) for b in blobs} <= layout_blobs(tmp_path / "a")
    copied = pull(reg, f"app@{digest}", tmp_path / "b")
    assert copied[0].names == (f"{reg.host}/app@{digest}",)
    accepts = [m for m, p, s in reg.log if "/manifests/" in p]
    assert accepts


def test_pull_docker_manifest_converted(reg: FakeRegistry, tmp_path: Path) -> None:
    put_image(reg, "dock", "latest", docker=True)
    pull(reg, "dock", tmp_path / "a")
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    manifest = json.loads((tmp_path / "a" / "blobs" / "sha256" /
                           index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    assert manifest["mediaType"] == OCI_MANIFEST


def test_pull_index_selects_platform(reg: FakeRegistry, tmp_path: Path) -> None:
    amd, _ = put_image(reg, "multi", "amd", arch="amd64")
    arm, _ = put_image(reg, "multi", "arm", arch="arm64")
    entries = []
    for digest, arch in ((arm, "arm64"), (amd, "amd64")):
        data = reg.manifests[("multi", digest)][0]
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data),
                        "platform": {"os": "linux", "architecture": arch}})
    reg.add_manifest("multi", "latest", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                    "manifests": entries}).encode(), OCI_INDEX)
    pull(reg, "multi", tmp_path / "a")
    assert amd in (tmp_path / "a" / "index.json").read_text()
    pull(reg, "multi", tmp_path / "b", platform=("linux", "arm64", None))
    assert arm in (tmp_path / "b" / "index.json").read_text()
    from corral.oci.image import NoMatchingPlatform

    with pytest.raises(NoMatchingPlatform, match="s390x"):
        pull(reg, "multi", tmp_path / "c", platform=("linux", "s390x", None))


def test_pull_unknown_names_the_manifest(reg: FakeRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryNotFound, match="MANIFEST_UNKNOWN"):
        pull(reg, "nope:1", tmp_path / "a")
    assert not (tmp_path / "a").exists() or not layout_blobs(tmp_path / "a")


def test_pull_by_digest_verifies_the_manifest(reg: FakeRegistry, tmp_path: Path) -> None:
    digest, _ = put_image(reg, "app", "1")
    data, media_type = reg.manifests[("app", "1")]
    reg.manifests[("app", digest)] = (data.replace(b'"schemaVersion": 2',
                                                   b'"schemaVersion":  2'), media_type)
    with pytest.raises(DigestMismatch):
        pull(reg, f"app@{digest}", tmp_path / "a")


def test_dropped_connection_resumes_with_range(reg: FakeRegistry, tmp_path: Path) -> None:
    _, blobs = put_image(reg, "app", "1", layers=1, size=3 << 20)
    reg.faults = ["drop", "drop"]  # the config, then the layer
    pull(reg, "app:1", tmp_path / "a")
    assert sha256(blobs[0]) in layout_blobs(tmp_path / "a")
    statuses = [s for m, p, s in reg.log if "/blobs/sha256" in p and m == "GET"]
    assert -1 in statuses and 206 in statuses


def test_wrong_blob_content_fails_and_keeps_nothing(reg: FakeRegistry, tmp_path: Path) -> None:
    _, blobs = put_image(reg, "app", "1", layers=1)
    reg.faults = ["corrupt"]  # the config: fetched first
    with pytest.raises(DigestMismatch):
        pull(reg, "app:1", tmp_path / "a")
    put_image(reg, "app2", "1", layers=1)
    reg.faults = []
    src = transports.parse(f"docker://{reg.host}/app2:1", registry=opts())
    source = src.open_source()
    image = source.images()[0]
    reg.faults = ["corrupt"]
    with pytest.raises(DigestMismatch):
        transports.copy(src, transports.parse(f"oci:{tmp_path / 'b'}:x"))
    source.close()
    assert sha256(blobs[0]) not in layout_blobs(tmp_path / "b")
    assert image.manifest.layers


def test_server_errors_are_retried_then_reported(reg: FakeRegistry, tmp_path: Path) -> None:
    put_image(reg, "app", "1")
    reg.faults = ["500"]  # one 500: retried
    pull(reg, "app:1", tmp_path / "a")
    reg.fail_always = True
    with pytest.raises(RegistryUnavailable, match="500"):
        pull(reg, "app:1", tmp_path / "b")
    assert not layout_blobs(tmp_path / "b")


# -- auth -------------------------------------------------------------------------


def test_bearer_token_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    with FakeRegistry(bearer=("alice", "pw"), anonymous_pull=True) as reg:
        put_image(reg, "app", "1")
        pull(reg, "app:1", tmp_path / "anon")      # anonymous pull token
        assert reg.token_requests[0]["service"] == ["fake"]
        assert "repository:app:pull" in reg.token_requests[0]["scope"]
        layout = f"oci:{tmp_path / 'anon'}:x"
        with pytest.raises(Unauthorized):
            transports.copy(transports.parse(layout),
                            transports.parse(f"docker://{reg.host}/mine:1", registry=opts()))
        auth.store(reg.host, auth.Credentials("alice", "pw"))
        transports.copy(transports.parse(layout),
                        transports.parse(f"docker://{reg.host}/mine:1", registry=opts()))
        assert (("mine", "1")) in reg.manifests
        assert any("repository:mine:pull,push" in q.get("scope", []) for q in reg.token_requests)


def test_basic_auth_and_wrong_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    with FakeRegistry(basic=("bob", "right")) as reg:
        put_image(reg, "app", "1")
        with pytest.raises(Unauthorized, match="corral login"):
            pull(reg, "app:1", tmp_path / "a")
        with pytest.raises(Unauthorized, match="401"):
            pull(reg, "app:1", tmp_path / "b", username="bob", password="wrong")
        pull(reg, "app:1", tmp_path / "c", username="bob", password="right")
        auth.store(reg.host, auth.Credentials("bob", "right"))
        pull(reg, "app:1", tmp_path / "d")


def test_challenge_parsing() -> None:
    cs = auth.parse_challenges('Bearer realm="https://auth.example/token",service="reg",'
                               'scope="repository:a/b:pull,push", Basic realm="x"')
    assert [c.scheme for c in cs] == ["bearer", "basic"]
    assert cs[0].params == {"realm": "https://auth.example/token", "service": "reg",
                            "scope": "repository:a/b:pull,push"}
    assert auth.parse_challenges('Basic realm="a \\"q\\" b"')[0].params["realm"] == 'a "q" b'
    assert auth.parse_challenges("") == []


def test_auth_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    docker = tmp_path / "home" / ".docker" / "config.json"
    docker.parent.mkdir(parents=True)
    docker.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:hubpw").decode()},
        "quay.example/team": {"auth": base64.b64encode(b"team:t").decode()},
        "quay.example": {"auth": base64.b64encode(b"all:a").decode()}}}))
    assert auth.lookup("docker.io") == auth.Credentials("hub", "hubpw")
    assert auth.lookup("quay.example", "team/app").username == "team"
    assert auth.lookup("quay.example", "other/app").username == "all"
    assert auth.lookup("nowhere.example") is None
    path = auth.store("localhost:5000", auth.Credentials("me", "p:w"))
    assert path == tmp_path / "run" / "containers" / "auth.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    stored = json.loads(path.read_text())["auths"]["localhost:5000"]["auth"]
    assert base64.b64decode(stored) == b"me:p:w"
    assert auth.lookup("localhost:5000") == auth.Credentials("me", "p:w")
    auth.remove("localhost:5000")
    assert auth.lookup("localhost:5000") is None
    with pytest.raises(auth.NotLoggedIn, match="docker"):
        auth.remove("docker.io")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert auth.store("r.example", auth.Credentials("x", "y")) == \
        tmp_path / "config" / "corral" / "auth.json"
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    with pytest.raises(auth.AuthFileError, match="bad.json"):
        auth.lookup("r.example", authfile=str(bad))


# -- configuration --------------------------------------------------------------


def test_registries_conf_mirrors_and_insecure(tmp_path: Path) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "docker.io"\n'
                    '[[registry.mirror]]\nlocation = "127.0.0.1:5001/hub"\ninsecure = true\n'
                    '[[registry]]\nlocation = "insecure.example:5000"\ninsecure = true\n'
                    '[[registry]]\nlocation = "blocked.example"\nblocked = true\n')
    o = RegistryOptions(conf_path=str(conf))
    eps = o.endpoints("docker.io", "library/busybox", pull=True)
    assert [(e.host, e.repository, e.mirror) for e in eps] == [
        ("127.0.0.1:5001", "hub/library/busybox", True),
        ("registry-1.docker.io", "library/busybox", False)]
    assert len(o.endpoints("docker.io", "library/busybox", pull=False)) == 1
    assert o.insecure("insecure.example:5000") and not o.insecure("docker.io")
    assert o.insecure("127.0.0.1:5001")
    from corral.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="blocked"):
        o.endpoints("blocked.example", "x", pull=True)
    assert RegistryOptions(tls_verify=False).insecure("anything.example")
    with pytest.raises(InvalidArgument, match="registries.conf"):
        parse_conf(b"[[registry]\n", "registries.conf")


def test_loopback() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example:5000") and not is_loopback("10.0.0.1")


def test_plain_http_refused_for_a_remote_registry() -> None:
    from corral.registry.client.client import Registry

    r = Registry("registry.invalid:5000", opts())
    assert not r.may_use_http
    r.close()
    r = Registry("registry.invalid:5000", opts(tls_verify=False))
    assert r.may_use_http
    r.close()


# -- push -------------------------------------------------------------------------


def test_push_monolithic_chunked_mount_and_skip(reg: FakeRegistry, tmp_path: Path) -> None:
    _, blobs = put_image(reg, "src", "1", layers=2, size=300_000)
    cache = str(tmp_path / "blob-locations.json")
    layout = tmp_path / "layout"
    transports.copy(transports.parse(f"docker://{reg.host}/src:1",
                                     registry=opts(blob_cache=cache)),
                    transports.parse(f"oci:{layout}:x"))
    # a push to another repository mounts every blob the cache says src has
    reg.log.clear()
    transports.copy(transports.parse(f"oci:{layout}:x"),
                    transports.parse(f"docker://{reg.host}/dst:1",
                                     registry=opts(blob_cache=cache)))
    posts = [p for m, p, s in reg.log if m == "POST"]
    assert posts and all("mount=" in p and "from=src" in p for p in posts)
    assert reg.manifests[("dst", "1")][0] == reg.manifests[("src", "1")][0]
    # without the cache: uploads, in chunks when large; then the manifest, last
    reg.log.clear()
    transports.copy(transports.parse(f"oci:{layout}:x"),
                    transports.parse(f"docker://{reg.host}/up:1",
                                     registry=opts(chunk_size=100_000)))
    methods = [(m, p.split("?")[0]) for m, p, s in reg.log]
    assert ("PATCH" in [m for m, _ in methods])
    assert methods[-1] == ("PUT", "/v2/up/manifests/1")
    assert {sha256(b) for b in blobs} <= reg.repo_blobs["up"]
    # again: every blob exists (HEAD), nothing is uploaded
    reg.log.clear()
    transports.copy(transports.parse(f"oci:{layout}:x"),
                    transports.parse(f"docker://{reg.host}/up:2", registry=opts()))
    assert not [p for m, p, s in reg.log if m in ("POST", "PATCH")]
    assert ("up", "2") in reg.manifests


def test_pull_through_a_mirror(tmp_path: Path) -> None:
    with FakeRegistry() as primary, FakeRegistry() as mirror:
        conf = tmp_path / "registries.conf"
        conf.write_text(f'[[registry]]\nlocation = "{primary.host}"\n'
                        f'[[registry.mirror]]\nlocation = "{mirror.host}/cache"\n')
        put_image(mirror, "cache/app", "1")
        put_image(primary, "app", "2")
        o = RegistryOptions(retries=0, conf_path=str(conf))
        transports.copy(transports.parse(f"docker://{primary.host}/app:1", registry=o),
                        transports.parse(f"oci:{tmp_path / 'a'}:x"))
        assert not primary.log          # served by the mirror
        transports.copy(transports.parse(f"docker://{primary.host}/app:2", registry=o),
                        transports.parse(f"oci:{tmp_path / 'b'}:x"))
        assert primary.log              # not in the mirror: the registry itself


def test_system_cas_are_loaded_only_for_https(reg: FakeRegistry) -> None:
    """A plain-http (loopback) registry never pays for loading the system CAs;
    the first https request loads them."""
    import httpx

    from corral.registry.client.client import Registry

    put_image(reg, "app", "1")
    r = Registry(reg.host, opts())
    try:
        r.get_manifest("app", "1", "test")
        assert r.scheme == "http" and not r._cas_loaded
        assert r._ssl.cert_store_stats()["x509_ca"] == 0
        r._before_request(httpx.Request("GET", "https://registry.invalid/v2/"))
        assert r._cas_loaded
    finally:
        r.close()
