"""corral push/pull against Debian's docker-registry (distribution v2) on 127.0.0.1.

A busybox image made with `corral image busybox` goes up (monolithic, chunked,
cross-repository mount, by digest) and comes back into another store, where
`corral run --rm` runs it. With htpasswd (bcrypt) basic auth: pulls need a
login, a wrong password is one clear line, logout forgets the credentials.
Every registry runs in a temporary directory on a free port and is always
stopped; auth files live in the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from tests.support.docker_registry import DockerRegistry, available
from tests.support.stores import remove_root

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _requirements():
    if os.geteuid() != 0:
        pytest.skip("needs root: corral stores with overlay layers and containers")
    why = available()
    if why:
        pytest.skip(why)
    if not os.path.exists("/bin/busybox"):
        pytest.skip("needs a static busybox at /bin/busybox for the test image")


class Corral:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def __call__(self, *args: str, input: bytes | None = None,
                 check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([CORRAL, "--root", str(self.root), *args], input=input,
                           capture_output=True, timeout=120, env=self.env, check=False,
                           stdin=None if input is not None else subprocess.DEVNULL)
        r.out, r.err = r.stdout.decode(), r.stderr.decode()  # type: ignore[attr-defined]
        if check and r.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} exited {r.returncode}\n{r.err}")
        return r


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    e["CORRAL_REGISTRIES_CONF"] = str(tmp_path / "registries.conf")
    return e


@pytest.fixture
def stores(env):
    roots = [Path(tempfile.mkdtemp(prefix="corral-test-reg-")) for _ in range(2)]
    try:
        yield [Corral(r, env) for r in roots]
    finally:
        for root in roots:
            subprocess.run([CORRAL, "--root", str(root), "rm", "-af"], capture_output=True,
                           check=False)
            remove_root(root)


@pytest.fixture
def registry(tmp_path):
    with DockerRegistry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def auth_registry(tmp_path):
    with DockerRegistry(tmp_path / "auth-registry", users={"alice": "s3cret"}) as reg:
        yield reg


def test_push_pull_run(registry, stores, tmp_path):
    a, b = stores
    a("image", "busybox", "bb")
    image_id = json.loads(a("inspect", "bb").out)[0]["Id"]
    digestfile = tmp_path / "digest"
    a("push", "--digestfile", str(digestfile), "bb", f"{registry.host}/test/busybox:1")
    pulled = b("pull", f"{registry.host}/test/busybox:1")
    assert image_id.endswith(pulled.out.strip())
    assert b("run", "--rm", f"{registry.host}/test/busybox:1", "echo", "hello").out == "hello\n"
    digest = digestfile.read_text().strip()
    b("rmi", f"{registry.host}/test/busybox:1")
    b("pull", "-q", f"{registry.host}/test/busybox@{digest}")
    assert b("run", "--rm", f"{registry.host}/test/busybox@{digest}", "true").returncode == 0
    # the layer is mounted from test/busybox, not uploaded again
    a("push", "bb", f"{registry.host}/other/busybox:2")
    log = registry.log.read_text()
    assert "mount=sha256" in log and "from=test" in log.replace("%2F", "/")
    assert b("pull", "-q", f"{registry.host}/other/busybox:2").returncode == 0


def test_chunked_upload(registry, stores):
    a, b = stores
    a("image", "busybox", "bb")
    code = (
        "import sys\n"
        "from corral.image import transports\n"
        "from corral.registry.client.config import RegistryOptions\n"
        "from corral.storage import Store\n"
        "store = Store.open(sys.argv[1])\n"
        "transports.copy(transports.parse('containers-storage:bb', store=store),\n"
        "                transports.parse('docker://' + sys.argv[2],\n"
        "                                 registry=RegistryOptions(chunk_size=200_000)))\n")
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", code, str(a.root),
                    f"{registry.host}/chunked/bb:1"], check=True, env=a.env, timeout=120)
    assert "PATCH" in registry.log.read_text()
    b("pull", "-q", f"{registry.host}/chunked/bb:1")
    assert b("run", "--rm", f"{registry.host}/chunked/bb:1", "echo", "ok").out == "ok\n"


def test_basic_auth_login_logout(auth_registry, stores, tmp_path):
    a, b = stores
    host = auth_registry.host
    a("image", "busybox", "bb")
    refused = a("push", "--retry", "0", "bb", f"{host}/private/bb:1", check=False)
    assert refused.returncode == 125 and "corral login" in refused.err
    wrong = a("login", "-u", "alice", "-p", "nope", host, check=False)
    assert wrong.returncode == 125
    assert "invalid username/password" in wrong.err and "Traceback" not in wrong.err
    assert not (tmp_path / "auth.json").exists()
    assert "Login Succeeded" in a("login", "-u", "alice", "--password-stdin", host,
                                  input=b"s3cret\n").out
    stored = json.loads((tmp_path / "auth.json").read_text())
    assert host in stored["auths"]
    a("push", "bb", f"{host}/private/bb:1")
    b("pull", "-q", f"{host}/private/bb:1")
    assert b("run", "--rm", f"{host}/private/bb:1", "echo", "authed").out == "authed\n"
    a("logout", host)
    b("rmi", f"{host}/private/bb:1")
    again = b("pull", "--retry", "0", f"{host}/private/bb:1", check=False)
    assert again.returncode == 125 and "requires a login" in again.err
    assert f"pulling {host}/private/bb:1" in again.err
    assert b("logout", host, check=False).returncode == 125


def _self_signed(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.crt", directory / "ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=corral-test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_tls_with_a_custom_ca(stores, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    cert, key = _self_signed(tmp_path / "pki")
    certs = tmp_path / "certs.d"
    certs.mkdir()
    shutil.copy(cert, certs / "ca.crt")
    a, b = stores
    a("image", "busybox", "bb")
    with DockerRegistry(tmp_path / "tls-registry", tls=(cert, key)) as reg:
        untrusted = a("push", "--retry", "0", "bb", f"{reg.host}/tls/bb:1", check=False)
        assert untrusted.returncode == 125
        assert "TLS failed" in untrusted.err and "--cert-dir" in untrusted.err
        a("push", "--cert-dir", str(certs), "bb", f"{reg.host}/tls/bb:1")
        b("pull", "-q", "--tls-verify=false", f"{reg.host}/tls/bb:1")
        assert b("run", "--rm", f"{reg.host}/tls/bb:1", "echo", "tls").out == "tls\n"


def test_a_partial_blob_is_resumed_with_range(registry, stores):
    """A partial download left in the store (as a killed pull leaves it) is
    continued with a Range request that docker-registry answers 206."""
    import urllib.request

    a, b = stores
    a("image", "busybox", "bb")
    a("push", "bb", f"{registry.host}/resume/bb:1")
    req = urllib.request.Request(f"http://{registry.host}/v2/resume/bb/manifests/1", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        layer = json.loads(resp.read())["layers"][0]
    with urllib.request.urlopen(f"http://{registry.host}/v2/resume/bb/blobs/"
                                f"{layer['digest']}", timeout=10) as resp:
        blob = resp.read()
    half = len(blob) // 2
    ingest = b.root / "content" / "ingest"
    ingest.mkdir(parents=True)
    (ingest / f"partial-sha256-{layer['digest'].split(':')[1]}").write_bytes(blob[:half])
    b("pull", "-q", f"{registry.host}/resume/bb:1")
    log = registry.log.read_text()
    assert f'"GET /v2/resume/bb/blobs/{layer["digest"]} HTTP/1.1" 206 {len(blob) - half} ' \
        in log, log[-2000:]
    assert b("run", "--rm", f"{registry.host}/resume/bb:1", "echo", "resumed").out == \
        "resumed\n"
    assert os.listdir(ingest) == []
