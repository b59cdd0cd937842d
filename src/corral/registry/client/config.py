"""Where and how to reach a registry: registries.conf, insecure registries, TLS, mirrors.

The configuration file has the layout of containers-registries.conf(5) v2
(TOML), read from `$CORRAL_REGISTRIES_CONF`, else `/etc/corral/registries.conf`:

```toml
[[registry]]
location = "registry.example:5000"      # host[:port][/path] prefix of image names
insecure = true                         # plain http allowed, TLS not verified
blocked = false                         # refuse pulls and pushes
[[registry.mirror]]
location = "127.0.0.1:5001/mirror"      # tried first for pulls, in order
insecure = true
```

Plain http is only used when the registry is insecure: configured so, given
`--tls-verify=false`, or on loopback (`localhost`, 127.0.0.0/8, ::1, as docker
does) — and then only when https does not answer. TLS trust: the system store
plus every `*.crt` of the cert directories (`--cert-dir`, else
`/etc/corral/certs.d/HOST[:PORT]`, `/etc/containers/certs.d/...`,
`/etc/docker/certs.d/...`); a `*.cert` with its `*.key` there is the client
certificate (docker's and containers' certs.d layout).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import InvalidArgument

CONF_ENV = "CORRAL_REGISTRIES_CONF"
DEFAULT_CONF = Path("/etc/corral/registries.conf")
CERT_DIRS = (Path("/etc/corral/certs.d"), Path("/etc/containers/certs.d"),
             Path("/etc/docker/certs.d"))
#: Docker Hub's names: images say docker.io, the API lives at registry-1.docker.io.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


class RegistriesConfError(InvalidArgument):
    """registries.conf is malformed; the message names the file and field."""


@dataclass(frozen=True)
class Endpoint:
    """One place to fetch a repository from: `host` (API host[:port]) and the repository path there."""

    host: str
    repository: str
    insecure: bool = False
    mirror: bool = False

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


@dataclass(frozen=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[tuple[str, bool], ...] = ()


@dataclass
class RegistryOptions:
    """What the CLI passes down: TLS flags, auth file, configuration, progress."""

    tls_verify: bool | None = None        # None: decide per registry; False: insecure
    cert_dir: str | None = None
    authfile: str | None = None
    username: str | None = None           # --creds for one command
    password: str | None = None
    conf_path: str | None = None
    platform: tuple[str, str, str | None] = ("linux", "amd64", None)
    progress: Any = None                  # corral.registry.client.progress reporter
    parallel: int = 4
    retries: int = 4
    chunk_size: int = 32 << 20            # uploads larger than this go in chunks
    blob_cache: str | None = None         # JSON file: digest -> repositories known to have it
    entries: list[RegistryEntry] = field(default_factory=list)
    _loaded: bool = False

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        path = Path(self.conf_path or os.environ.get(CONF_ENV) or DEFAULT_CONF)
        if path.is_file():
            self.entries = parse_conf(path.read_bytes(), str(path))

    def entry_for(self, name: str) -> RegistryEntry | None:
        """The entry with the longest prefix matching `name` (host[/path])."""
        self.load()
        best = None
        for entry in self.entries:
            p = entry.prefix
            matches = name == p or name.startswith(p + "/") or (
                p.startswith("*.") and name.split("/")[0].endswith(p[1:]))
            if matches and (best is None or len(p) > len(best.prefix)):
                best = entry
        return best

    def endpoints(self, domain: str, path: str, *, pull: bool) -> list[Endpoint]:
        """Where to look for `domain/path`: mirrors first (pulls only), then the registry."""
        name = f"{domain}/{path}"
        entry = self.entry_for(name)
        if entry is not None and entry.blocked:
            raise InvalidArgument(f"registry {entry.prefix} is blocked in registries.conf")
        out: list[Endpoint] = []
        if entry is not None:
            rest = name[len(entry.prefix):] if not entry.prefix.startswith("*.") else name
            if pull:
                for location, insecure in entry.mirrors:
                    out.append(_endpoint(location + rest if not entry.prefix.startswith("*.")
                                         else location + "/" + path, insecure, True))
            if not entry.prefix.startswith("*."):
                out.append(_endpoint(entry.location + rest, entry.insecure, False))
                return out
        out.append(_endpoint(name, entry.insecure if entry else False, False))
        return out

    def insecure(self, host: str) -> bool:
        """Configured insecure (or --tls-verify=false)."""
        if self.tls_verify is False:
            return True
        entry = self.entry_for(host)
        if entry is not None and entry.insecure:
            return True
        for e in self.entries:
            for location, insecure in e.mirrors:
                if insecure and location.split("/")[0] == host:
                    return True
        return False


def _endpoint(location: str, insecure: bool, mirror: bool) -> Endpoint:
    host, _, repo = location.partition("/")
    if host == DOCKER_HUB:
        host = DOCKER_HUB_API
    return Endpoint(host, repo, insecure, mirror)


def parse_conf(data: bytes, where: str) -> list[RegistryEntry]:
    import tomllib

    try:
        doc = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RegistriesConfError(f"{where}: {exc}") from None
    entries = []
    regs = doc.get("registry", [])
    if not isinstance(regs, list):
        raise RegistriesConfError(f"{where}: [[registry]] must be an array of tables")
    for i, reg in enumerate(regs):
        at = f"{where}: registry[{i}]"
        if not isinstance(reg, dict):
            raise RegistriesConfError(f"{at}: not a table")
        location = reg.get("location", "")
        prefix = reg.get("prefix") or location
        if not isinstance(location, str) or not isinstance(prefix, str) or not prefix:
            raise RegistriesConfError(f"{at}: location must be a non-empty string")
        mirrors = []
        for j, m in enumerate(reg.get("mirror", []) or []):
            if not isinstance(m, dict) or not isinstance(m.get("location"), str):
                raise RegistriesConfError(f"{at}.mirror[{j}]: needs a location string")
            mirrors.append((m["location"].rstrip("/"), bool(m.get("insecure", False))))
        for key in ("insecure", "blocked"):
            if not isinstance(reg.get(key, False), bool):
                raise RegistriesConfError(f"{at}.{key}: must be true or false")
        entries.append(RegistryEntry(prefix.rstrip("/"), (location or prefix).rstrip("/"),
                                     reg.get("insecure", False), reg.get("blocked", False),
                                     tuple(mirrors)))
    return entries


def is_loopback(host: str) -> bool:
    """host[:port] names this machine (localhost, 127.0.0.0/8, ::1)."""
    name = host
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def ssl_context(host: str, cert_dir: str | None, verify: bool, *,
                system_cas: bool = True) -> Any:
    """An SSLContext trusting the system CAs plus the cert directory's *.crt files.

    `system_cas=False` leaves the system CAs out (`ctx.load_default_certs()`
    adds them later: ~40 ms a registry that plain-http pulls need not pay).
    """
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)    # create_default_context's settings
    if system_cas:
        ctx.load_default_certs()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    dirs = [Path(cert_dir)] if cert_dir else [d / host for d in CERT_DIRS]
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if f.suffix == ".crt" and verify:
                ctx.load_verify_locations(cafile=str(f))
            elif f.suffix == ".cert":
                key = f.with_suffix(".key")
                if not key.is_file():
                    raise InvalidArgument(f"{f}: client certificate without {key.name}")
                ctx.load_cert_chain(str(f), str(key))
    return ctx
