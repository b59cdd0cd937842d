"""Debian's `docker-registry` (distribution v2) on 127.0.0.1 for client tests.

`DockerRegistry(tmp, users={"alice": "secret"})` writes a config (filesystem
storage under `tmp`, a free loopback port, htpasswd bcrypt auth when users are
given, TLS with `tls=(cert, key)`, token auth with `token=` a
tests.support.token_server.TokenServer), starts the binary and waits for
`/v2/`; `stop()` always kills it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
HTPASSWD = shutil.which("htpasswd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> str | None:
    """Why the registry cannot run here (None: it can)."""
    if not os.path.exists(BINARY):
        return "docker-registry is not installed (apt-get install docker-registry)"
    return None


class DockerRegistry:
    def __init__(self, tmp: Path, users: dict[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None, token: Any = None) -> None:
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.users = users or {}
        self.tls = tls
        self.token = token
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.tmp / "registry.log"

    def start(self) -> DockerRegistry:
        auth = ""
        if self.users:
            if HTPASSWD is None:
                raise RuntimeError("htpasswd is not installed (apt-get install apache2-utils)")
            path = self.tmp / "htpasswd"
            for i, (user, password) in enumerate(self.users.items()):
                subprocess.run([HTPASSWD, "-B", "-b"] + (["-c"] if i == 0 else [])
                               + [str(path), user, password], check=True,
                               capture_output=True)
            auth = f"auth:\n  htpasswd:\n    realm: corral-test\n    path: {path}\n"
        elif self.token is not None:
            auth = self.token.registry_auth()
        tls = ""
        if self.tls:
            tls = f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n"
        config = self.tmp / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.tmp / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n" + tls + auth)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        scheme = "https" if self.tls else "http"
        import ssl

        ctx = ssl._create_unverified_context()  # only "is it up?"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{scheme}://{self.host}/v2/", timeout=1,
                                       context=ctx if self.tls else None).close()
                return self
            except urllib.error.HTTPError:
                return self           # 401: up, wants auth
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not answer within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
