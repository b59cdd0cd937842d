"""Helpers for the registry server tests: a keep-alive HTTP client on 127.0.0.1,
blob/manifest builders, and a `corral registry serve` subprocess runner."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> object:
        return json.loads(self.body)

    def codes(self) -> list[str]:
        return [e["code"] for e in json.loads(self.body)["errors"]]


class Client:
    """One keep-alive connection (reopened when the server closes it)."""

    def __init__(self, host: str, port: int, *, tls: bool = False,
                 auth: tuple[str, str] | None = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.auth = auth
        self.conn: http.client.HTTPConnection | None = None
        self.connections = 0

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            if self.tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=30,
                                                        context=ctx)
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self.connections += 1
        return self.conn

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, *, chunked: bool = False,
                auth: tuple[str, str] | None | bool = True) -> Reply:
        headers = dict(headers or {})
        creds = self.auth if auth is True else (auth or None)
        if creds:
            token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        conn = self._connect()
        if chunked:
            def pieces(data=body or b"", size=7000):
                for i in range(0, len(data), size):
                    yield data[i:i + size]
            conn.request(method, path, body=pieces(), headers=headers, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.will_close:
            conn.close()
            self.conn = None
        return Reply(response.status, response.headers, data)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # -- conveniences --------------------------------------------------------

    def push_blob(self, name: str, data: bytes, digest: str | None = None) -> str:
        digest = digest or sha256(data)
        r = self.request("POST", f"/v2/{name}/blobs/uploads/")
        assert r.status == 202, (r.status, r.body)
        location = r.header("Location")
        sep = "&" if "?" in location else "?"
        r = self.request("PUT", f"{location}{sep}digest={digest}", data,
                         {"Content-Type": "application/octet-stream"})
        assert r.status == 201, (r.status, r.body)
        return digest

    def push_manifest(self, name: str, ref: str, doc: dict | bytes,
                      media_type: str = OCI_MANIFEST) -> Reply:
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return self.request("PUT", f"/v2/{name}/manifests/{ref}", data,
                            {"Content-Type": media_type})


def descriptor(media_type: str, data: bytes, **extra: object) -> dict:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def image(client: Client, name: str, tag: str | None = None, *, layer: bytes = b"layer",
          config: bytes | None = None, **fields: object) -> tuple[dict, bytes, str]:
    """Push a config and a layer and (if `tag`) the manifest; returns (doc, bytes, digest)."""
    config = config if config is not None else json.dumps(
        {"architecture": "amd64", "os": "linux",
         "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    client.push_blob(name, config)
    client.push_blob(name, layer)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(OCI_CONFIG, config),
           "layers": [descriptor(OCI_LAYER, layer)], **fields}
    data = json.dumps(doc).encode()
    if tag is not None:
        r = client.push_manifest(name, tag, data)
        assert r.status == 201, (r.status, r.body)
    return doc, data, sha256(data)


class ServeProcess:
    """`corral registry serve --addr 127.0.0.1:0` in its own process group."""

    def __init__(self, root: Path, *extra: str) -> None:
        argv = [sys.executable, "-m", "corral.cli.main", "registry", "serve",
                "--addr", "127.0.0.1:0", "--root", str(root), *extra]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True, env=env)
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("listening on ") or not line:
                break
        if not line.startswith("listening on "):
            self.stop()
            raise AssertionError(f"corral registry serve did not start: {line!r} "
                                 f"{self.proc.stderr.read()}")
        self.url = line.split()[-1]
        hostport = self.url.split("://", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.addr = f"{self.host}:{self.port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return self.proc.returncode
