"""Real clients against `corral registry serve` on 127.0.0.1: skopeo (copy to and
from docker://, inspect, list-tags, delete, OCI and Docker schema-2 manifests,
cross-repository mounts) and podman (push, pull, run the pulled image), with
and without basic auth (htpasswd/bcrypt). The spec's key conformance cases run
against corral and, for comparison, Debian's docker-registry (distribution v2)
when it is installed, with identical expectations.

The registries are `corral registry serve --addr 127.0.0.1:0` subprocesses
(the CLI as shipped), one per module, stopped in teardown. podman uses the
private store of conftest.py; images it pulls are removed in teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from tests.interop.conftest import CORRAL_RUNTIME, IMAGE, RUNC, Podman, run_cmd
from tests.support.registry_server import Client, ServeProcess, image, sha256
from tests.support.stores import remove_root

from corral.registry.server.auth import make_htpasswd_line

SKOPEO = shutil.which("skopeo")
DOCKER_REGISTRY = shutil.which("docker-registry")
USER, PASSWORD = "corral", "interop-pw"

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def workdir():
    base = Path(tempfile.mkdtemp(prefix="corral-test-registry-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def registry(workdir):
    proc = ServeProcess(workdir / "registry")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def auth_registry(workdir):
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(make_htpasswd_line(USER, PASSWORD) + "\n")
    proc = ServeProcess(workdir / "auth-registry", "--htpasswd", str(htpasswd))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def archive(podman_store, workdir):
    """The busybox test image as a docker-archive (saved from podman's private store)."""
    path = workdir / "busybox-docker-archive.tar"
    Podman(RUNC or CORRAL_RUNTIME, podman_store)("save", "--format", "docker-archive",
                                                  "-o", str(path), IMAGE, check=True)
    return path


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if SKOPEO is None:
        pytest.skip("skopeo is not installed")
    result = run_cmd([SKOPEO, *args], timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} exited {result.returncode}\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def _layout_manifest(layout: Path) -> dict:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())


# -- skopeo -----------------------------------------------------------------------

def test_skopeo_copy_to_and_from_corral_registry(registry, archive, workdir):
    dest = f"docker://{registry.addr}/corral-test/busybox:v1"
    skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", dest)
    inspect = json.loads(skopeo("inspect", "--tls-verify=false", dest).stdout)
    assert inspect["Name"] == f"{registry.addr}/corral-test/busybox"
    raw = skopeo("inspect", "--raw", "--tls-verify=false", dest).stdout
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert inspect["Digest"] == sha256(raw.encode())
    # back out to an OCI layout: the same layers
    layout = workdir / "from-corral"
    skopeo("copy", "--src-tls-verify=false", dest, f"oci:{layout}:v1")
    pulled = _layout_manifest(layout)
    assert [l["digest"] for l in pulled["layers"]] == [l["digest"] for l in manifest["layers"]]
    for layer in pulled["layers"]:
        blob = layout / "blobs" / "sha256" / layer["digest"].split(":")[1]
        assert sha256(blob.read_bytes()) == layer["digest"]
    # an OCI manifest too, pushed from the layout
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
           f"docker://{registry.addr}/corral-test/busybox:v1-oci")
    raw = skopeo("inspect", "--raw", "--tls-verify=false",
                 f"docker://{registry.addr}/corral-test/busybox:v1-oci").stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    tags = json.loads(skopeo("list-tags", "--tls-verify=false",
                             f"docker://{registry.addr}/corral-test/busybox").stdout)
    assert sorted(tags["Tags"]) == ["v1", "v1-oci"]


def test_skopeo_registry_to_registry_mounts_and_delete(registry, archive):
    src = f"docker://{registry.addr}/corral-test/busybox:v1"
    skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", src)
    dst = f"docker://{registry.addr}/corral-test/copy:v2"
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", src, dst)
    a = json.loads(skopeo("inspect", "--tls-verify=false", src).stdout)
    b = json.loads(skopeo("inspect", "--tls-verify=false", dst).stdout)
    assert a["Digest"] == b["Digest"] and a["Layers"] == b["Layers"]
    skopeo("delete", "--tls-verify=false", dst)
    gone = skopeo("inspect", "--tls-verify=false", dst, check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower()


def test_skopeo_with_basic_auth(auth_registry, archive, workdir):
    dest = f"docker://{auth_registry.addr}/corral-test/private:v1"
    denied = skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", dest,
                    check=False)
    assert denied.returncode != 0
    assert "unauthorized" in denied.stderr.lower() or "authentication" in denied.stderr.lower()
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"{USER}:{PASSWORD}",
           f"docker-archive:{archive}", dest)
    wrong = skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:wrong", dest,
                   check=False)
    assert wrong.returncode != 0
    layout = workdir / "from-auth"
    skopeo("copy", "--src-tls-verify=false", "--src-creds", f"{USER}:{PASSWORD}", dest,
           f"oci:{layout}:v1")
    assert _layout_manifest(layout)["layers"]


# -- podman -----------------------------------------------------------------------

@pytest.fixture
def podman(podman_store):
    client = Podman(RUNC or CORRAL_RUNTIME, podman_store)
    client.pulled = []  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        client.remove_all_named()
        for name in client.pulled:  # type: ignore[attr-defined]
            client("rmi", "-f", name)


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "basic-auth"])
def test_podman_push_pull_run(podman, registry, auth_registry, authenticated):
    target = auth_registry if authenticated else registry
    ref = f"{target.addr}/corral-test/podman:{'auth' if authenticated else 'anon'}"
    creds = ["--creds", f"{USER}:{PASSWORD}"] if authenticated else []
    if authenticated:
        denied = podman("push", "--tls-verify=false", IMAGE, f"docker://{ref}")
        assert denied.returncode != 0
    podman("push", "--tls-verify=false", *creds, IMAGE, f"docker://{ref}", check=True)
    podman.pulled.append(ref)
    # what podman pushed is all there, verified
    c = Client(target.host, target.port, auth=(USER, PASSWORD) if authenticated else None)
    tag = ref.rsplit(":", 1)[1]
    assert tag in c.request("GET", "/v2/corral-test/podman/tags/list").json()["tags"]
    accept = ("application/vnd.oci.image.manifest.v1+json, "
              "application/vnd.docker.distribution.manifest.v2+json")
    r = c.request("GET", f"/v2/corral-test/podman/manifests/{tag}", headers={"Accept": accept})
    assert r.status == 200 and r.header("Docker-Content-Digest") == sha256(r.body)
    manifest = r.json()
    for desc in [manifest["config"], *manifest["layers"]]:
        blob = c.request("GET", f"/v2/corral-test/podman/blobs/{desc['digest']}")
        assert sha256(blob.body) == desc["digest"] and len(blob.body) == desc["size"]
    c.close()
    podman("rmi", "-f", ref)
    pulled = podman("pull", "--tls-verify=false", *creds, ref, check=True, timeout=120)
    image_id = pulled.stdout.strip().splitlines()[-1]
    local = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=True).stdout.strip()
    assert image_id == local  # same config digest: nothing was altered on the way
    name = podman.new_name()
    out = podman("run", "--rm", "--network", "none", "--name", name, ref, "echo", "pulled-ok",
                 check=True)
    assert out.stdout.strip() == "pulled-ok"


# -- conformance cases, corral and docker-registry side by side ---------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def docker_registry(workdir):
    if DOCKER_REGISTRY is None:
        pytest.skip("docker-registry (distribution v2) is not installed")
    port = _free_port()
    config = workdir / "docker-registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {workdir / 'docker-registry'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("docker-registry did not start")
        yield ("127.0.0.1", port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture(params=["corral", "docker-registry"])
def any_registry(request, registry):
    if request.param == "corral":
        c = Client(registry.host, registry.port)
    else:
        c = Client(*request.getfixturevalue("docker_registry"))
    c.name = request.param  # type: ignore[attr-defined]
    yield c
    c.close()


def test_conformance_chunked_out_of_order(any_registry):
    c = any_registry
    if c.name == "docker-registry":
        # Debian's distribution 2.8 ignores Content-Range on PATCH (no 416): the
        # spec's MUST is checked on corral only.
        pytest.skip("docker-registry 2.8 does not answer out-of-order chunks with 416")
    data = os.urandom(30_000)
    location = c.request("POST", "/v2/conf/chunks/blobs/uploads/",
                         headers={"Content-Length": "0"}).header("Location")
    r = c.request("PATCH", location, data[:10_000], {"Content-Range": "0-9999",
                                                      "Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.header("Range") == "0-9999"
    location = r.header("Location")
    r = c.request("PATCH", location, data[20_000:], {"Content-Range": "20000-29999"})
    assert r.status == 416
    r = c.request("GET", location)
    assert r.status == 204 and r.header("Range") == "0-9999"
    location = r.header("Location")
    r = c.request("PATCH", location, data[10_000:], {"Content-Range": "10000-29999"})
    assert r.status == 202
    location = r.header("Location")
    sep = "&" if "?" in location else "?"
    r = c.request("PUT", f"{location}{sep}digest={sha256(data)}")
    assert r.status == 201
    assert c.request("GET", f"/v2/conf/chunks/blobs/{sha256(data)}").body == data


def test_conformance_manifest_and_tags(any_registry):
    c = any_registry
    doc, data, digest = image(c, "conf/tags", "t1", layer=os.urandom(64))
    for tag in ("t2", "t3", "t4"):
        assert c.push_manifest("conf/tags", tag, data).status == 201
    if c.name == "corral":
        r = c.request("GET", "/v2/conf/tags/tags/list?n=2")
        assert r.json()["tags"] == ["t1", "t2"]
        assert 'rel="next"' in r.header("Link")
        r = c.request("GET", "/v2/conf/tags/tags/list?n=2&last=t2")
        assert r.json()["tags"] == ["t3", "t4"]
    else:  # distribution 2.8 ignores n/last on tags/list and does not sort
        r = c.request("GET", "/v2/conf/tags/tags/list")
        assert sorted(r.json()["tags"]) == ["t1", "t2", "t3", "t4"]
    r = c.request("GET", "/v2/conf/tags/manifests/t3",
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.header("Docker-Content-Digest") == digest and r.body == data
    missing = dict(doc, layers=[{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                 "digest": sha256(b"never pushed"), "size": 12}])
    r = c.push_manifest("conf/tags", "broken", missing)
    assert r.status == 400 and "MANIFEST_BLOB_UNKNOWN" in r.codes()
    r = c.push_manifest("conf/tags", "broken", b"{]")
    assert r.status == 400 and r.codes()[0] in ("MANIFEST_INVALID", "MANIFEST_UNVERIFIED")
    assert c.request("DELETE", f"/v2/conf/tags/manifests/{digest}").status == 202
    assert c.request("GET", "/v2/conf/tags/manifests/t1").status == 404
    r = c.request("GET", "/v2/conf/never/tags/list")
    assert r.status == 404 and r.codes() == ["NAME_UNKNOWN"]


def test_conformance_mount_and_wrong_digest(any_registry):
    c = any_registry
    data = os.urandom(1000)
    digest = c.push_blob("conf/src", data)
    r = c.request("POST", f"/v2/conf/dst/blobs/uploads/?mount={digest}&from=conf/src")
    assert r.status == 201 and r.header("Docker-Content-Digest") == digest
    location = c.request("POST", "/v2/conf/dst/blobs/uploads/").header("Location")
    sep = "&" if "?" in location else "?"
    r = c.request("PUT", f"{location}{sep}digest={sha256(b'not it')}", b"content")
    assert r.status == 400 and r.codes() == ["DIGEST_INVALID"]
    assert c.request("HEAD", f"/v2/conf/dst/blobs/{sha256(b'not it')}").status == 404
    r = c.request("GET", f"/v2/conf/dst/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]


# -- podman -> corral registry -> corral ---------------------------------------------

CORRAL = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "corral")


@pytest.fixture
def corral_store():
    if not os.path.exists(CORRAL):
        pytest.skip(f"{CORRAL} is not installed (pip install -e .)")
    if os.geteuid() != 0:
        pytest.skip("needs root: corral run")
    root = Path(tempfile.mkdtemp(prefix="corral-test-regstore-"))
    try:
        yield root
    finally:
        remove_root(root)


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "basic-auth"])
def test_podman_pushed_image_pulled_by_corral_runs(podman, registry, auth_registry,
                                                  corral_store, authenticated):
    target = auth_registry if authenticated else registry
    ref = f"{target.addr}/corral-test/for-corral:v1"
    creds = ["--creds", f"{USER}:{PASSWORD}"] if authenticated else []
    podman("push", "--tls-verify=false", *creds, IMAGE, f"docker://{ref}", check=True)

    def corral(*args: str) -> subprocess.CompletedProcess:
        result = run_cmd([CORRAL, "--debug", "--root", str(corral_store), *args], timeout=180)
        assert result.returncode == 0, f"corral {args}: {result.stdout}\n{result.stderr}"
        return result

    corral("pull", "-q", "--tls-verify", "false", *creds, ref)
    assert corral("run", "--rm", ref, "echo", "from-corral-registry").stdout == \
        "from-corral-registry\n"


# -- bearer tokens: podman and corral through a token server ------------------------

@pytest.fixture(scope="module")
def token_registry(workdir):
    from tests.support.token_server import ISSUER, OPENSSL, SERVICE, TokenServer

    if not os.path.exists(OPENSSL):
        pytest.skip("needs openssl (the token signer)")
    with TokenServer(workdir / "token", users={USER: PASSWORD}) as tokens:
        proc = ServeProcess(workdir / "token-registry", "--token-realm", tokens.realm,
                            "--token-service", SERVICE, "--token-issuer", ISSUER,
                            "--token-rootcertbundle", str(tokens.cert))
        try:
            yield proc, tokens
        finally:
            proc.stop()


def _asked(tokens, repo: str, actions: set[str], with_creds: bool) -> bool:
    for _, scopes, creds in tokens.requests:
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, acts = rest.rpartition(":")
            if kind == "repository" and name == repo and set(acts.split(",")) == actions \
                    and creds == with_creds:
                return True
    return False


def test_podman_and_corral_through_bearer_tokens(podman, token_registry, corral_store):
    """corral registry serve --token-*: podman pushes with a token it gets with
    its credentials (anonymous tokens are pull-only), podman and corral pull with
    anonymous tokens, and corral runs what it pulled."""
    reg, tokens = token_registry
    ref = f"{reg.addr}/corral-test/token:v1"
    denied = podman("push", "--tls-verify=false", IMAGE, f"docker://{ref}")
    assert denied.returncode != 0
    assert _asked(tokens, "corral-test/token", {"pull", "push"}, with_creds=False)
    tokens.requests.clear()
    podman("push", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", IMAGE,
           f"docker://{ref}", check=True)
    podman.pulled.append(ref)
    assert _asked(tokens, "corral-test/token", {"pull", "push"}, with_creds=True)
    podman("rmi", "-f", ref)
    tokens.requests.clear()
    podman("pull", "--tls-verify=false", ref, check=True, timeout=120)
    assert _asked(tokens, "corral-test/token", {"pull"}, with_creds=False)

    def corral(*args: str) -> subprocess.CompletedProcess:
        result = run_cmd([CORRAL, "--root", str(corral_store), *args], timeout=180)
        assert result.returncode == 0, f"corral {args}: {result.stdout}\n{result.stderr}"
        return result

    corral("pull", "-q", ref)
    assert corral("run", "--rm", ref, "echo", "via-token").stdout == "via-token\n"
    refused = run_cmd([CORRAL, "--root", str(corral_store), "push", "--retry", "0", ref,
                       f"{reg.addr}/corral-test/token:v2"], timeout=120)
    assert refused.returncode == 125 and "corral login" in refused.stderr
    # corral's own login and push (a cross-repository mount: two scopes in one token)
    authfile = str(corral_store / "auth.json")
    corral("login", "--authfile", authfile, "-u", USER, "-p", PASSWORD, reg.addr)
    tokens.requests.clear()
    corral("push", "--authfile", authfile, ref, f"{reg.addr}/corral-test/token-copy:v1")
    assert _asked(tokens, "corral-test/token-copy", {"pull", "push"}, with_creds=True)
    assert _asked(tokens, "corral-test/token", {"pull"}, with_creds=True)
    c = Client(reg.host, reg.port)
    r = c.request("GET", "/v2/corral-test/token/tags/list")
    assert r.status == 401 and 'scope="repository:corral-test/token:pull"' in \
        r.header("WWW-Authenticate")
    c.close()
