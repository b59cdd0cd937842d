"""Registry credentials and the distribution auth flows.

Credentials are stored like docker's `config.json` and containers' `auth.json`:
`{"auths": {"registry.example:5000": {"auth": base64("user:password")}}}`.
Keys may be a host, a host/repository prefix (the longest match wins, as
containers-auth.json(5) says) or a URL (`https://index.docker.io/v1/`).

Files, first match wins: `--authfile` (or `$REGISTRY_AUTH_FILE`);
`${XDG_RUNTIME_DIR}/containers/auth.json` (podman's); corral's own
`${XDG_CONFIG_HOME:-~/.config}/corral/auth.json`; docker's
`${DOCKER_CONFIG:-~/.docker}/config.json` (with `credHelpers`/`credsStore`:
`docker-credential-NAME get`). `corral login` writes the first of: --authfile,
$REGISTRY_AUTH_FILE, the containers file when $XDG_RUNTIME_DIR is set, corral's
own file; always temp -> rename, mode 0600.

Challenges (RFC 7235 `WWW-Authenticate`): `Basic` → the credentials as basic
auth; `Bearer realm=...,service=...,scope=...` → the docker token protocol
(distribution's token.md): GET realm?service=&scope=... (with basic auth
and `account=` when there are credentials) → `{"token"|"access_token", "expires_in"}`; the
token is cached per scope set until it expires.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import InvalidArgument, NotFound
from corral.registry.client.errors import Unauthorized

AUTHFILE_ENV = "REGISTRY_AUTH_FILE"
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io",
                   "registry-1.docker.io")


class AuthFileError(InvalidArgument):
    """An auth file is malformed; the message names it."""


class NotLoggedIn(NotFound):
    """logout: no credentials for that registry."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    identity_token: str | None = None


def _home() -> Path:
    return Path(os.environ.get("HOME") or os.path.expanduser("~"))


def containers_authfile() -> Path | None:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "containers" / "auth.json" if runtime else None


def corral_authfile() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(_home() / ".config")
    return Path(base) / "corral" / "auth.json"


def docker_config() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or str(_home() / ".docker")
    return Path(base) / "config.json"


def write_target(authfile: str | None = None) -> Path:
    if authfile:
        return Path(authfile)
    if os.environ.get(AUTHFILE_ENV):
        return Path(os.environ[AUTHFILE_ENV])
    return containers_authfile() or corral_authfile()


def read_files(authfile: str | None = None) -> list[Path]:
    files: list[Path] = []
    if authfile:
        return [Path(authfile)]
    if os.environ.get(AUTHFILE_ENV):
        files.append(Path(os.environ[AUTHFILE_ENV]))
    for f in (containers_authfile(), corral_authfile(), docker_config()):
        if f is not None and f not in files:
            files.append(f)
    return files


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes() or b"{}")
    except FileNotFoundError:
        return {}
    except (ValueError, OSError) as exc:
        raise AuthFileError(f"auth file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("auths", {}), dict):
        raise AuthFileError(f"auth file {path}: not a JSON object with an \"auths\" object")
    return data


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "w") as f:
        json.dump(data, f, indent="\t")
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _normalize_key(key: str) -> str:
    """`https://host/v1/` -> host; docker hub's keys -> docker.io."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
            key = key.split("/")[0] if key.endswith(("/v1/", "/v2/", "/")) \
                or key.count("/") == 0 else key
    key = key.rstrip("/")
    if key in DOCKER_HUB_KEYS:
        return "docker.io"
    return key


def _decode(entry: Any, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken") or None
    auth = entry.get("auth")
    if auth:
        try:
            user, sep, password = base64.b64decode(auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise AuthFileError(f"{where}: \"auth\" is not base64 of user:password") from None
        if not sep:
            raise AuthFileError(f"{where}: \"auth\" is not base64 of user:password")
        return Credentials(user, password, token)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")), token)
    if token:
        return Credentials("<token>", "", token)
    return None


def _helper(name: str, server: str) -> Credentials | None:
    try:
        proc = subprocess.run([f"docker-credential-{name}", "get"], input=server.encode(),
                              capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(proc.stdout)
        return Credentials(data["Username"], data["Secret"])
    except (ValueError, KeyError, TypeError):
        return None


def lookup(registry: str, repository: str | None = None, *,
           authfile: str | None = None) -> Credentials | None:
    """The credentials for `registry` (host[:port], docker.io for Hub) and repository."""
    registry = _normalize_key(registry)
    names = [registry]
    if repository:
        parts = repository.split("/")
        names = [f"{registry}/{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1)] + names
    for path in read_files(authfile):
        data = _load(path)
        auths = {_normalize_key(k): v for k, v in (data.get("auths") or {}).items()}
        for name in names:
            if name in auths:
                creds = _decode(auths[name], f"auth file {path}: auths[{name!r}]")
                if creds is not None:
                    return creds
        helpers = data.get("credHelpers") or {}
        for key, helper in helpers.items() if isinstance(helpers, dict) else ():
            if _normalize_key(key) == registry:
                creds = _helper(str(helper), key)
                if creds is not None:
                    return creds
        store = data.get("credsStore")
        if isinstance(store, str) and store:
            creds = _helper(store, "https://index.docker.io/v1/"
                            if registry == "docker.io" else registry)
            if creds is not None:
                return creds
    return None


def store(registry: str, creds: Credentials, authfile: str | None = None) -> Path:
    path = write_target(authfile)
    data = _load(path)
    auths = data.setdefault("auths", {})
    key = _normalize_key(registry)
    for old in [k for k in auths if _normalize_key(k) == key]:
        del auths[old]
    auths[key] = {"auth": base64.b64encode(
        f"{creds.username}:{creds.password}".encode()).decode()}
    _save(path, data)
    return path


def remove(registry: str, authfile: str | None = None) -> list[Path]:
    """Remove the registry's entries from corral's and containers' files (never docker's)."""
    key = _normalize_key(registry)
    candidates = [write_target(authfile)]
    if not authfile:
        candidates += [p for p in (containers_authfile(), corral_authfile()) if p]
    removed = []
    for path in dict.fromkeys(candidates):
        data = _load(path)
        auths = data.get("auths") or {}
        found = [k for k in auths if _normalize_key(k) == key]
        if found:
            for k in found:
                del auths[k]
            _save(path, data)
            removed.append(path)
    if not removed:
        other = "" if authfile else (
            f" (docker's {docker_config()} has credentials for it; corral leaves that file alone)"
            if key in {_normalize_key(k) for k in
                       (_load(docker_config()).get("auths") or {})} else "")
        raise NotLoggedIn(f"not logged into {registry}{other}")
    return removed


# -- challenges -----------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(,|$)')


@dataclass(frozen=True)
class Challenge:
    scheme: str                 # lowercased: "basic", "bearer"
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """RFC 7235 challenges: `Bearer realm="x",service="y", Basic realm="z"`."""
    out: list[Challenge] = []
    pos = 0
    text = header.strip()
    while pos < len(text):
        m = re.compile(rf"\s*,?\s*({_TOKEN})").match(text, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while True:
            pm = _PARAM.match(text, pos)
            if not pm:
                break
            # a parameter, not the next challenge's scheme followed by a parameter
            params[pm.group(1).lower()] = (re.sub(r"\\(.)", r"\1", pm.group(2))
                                           if pm.group(2) is not None else pm.group(3))
            pos = pm.end()
        out.append(Challenge(scheme, params))
    return out


class Authorizer:
    """Answers one registry's challenges; thread-safe; caches bearer tokens per scope."""

    def __init__(self, registry: str, creds: Credentials | None, http: Any) -> None:
        self.registry = registry
        self.creds = creds
        self.http = http                      # an httpx.Client
        self.challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def learn(self, header: str | None) -> None:
        challenges = parse_challenges(header or "")
        for wanted in ("bearer", "basic"):
            for c in challenges:
                if c.scheme == wanted:
                    self.challenge = c
                    return
        if header:
            raise Unauthorized(f"{self.registry}: unsupported authentication challenge {header!r}")

    def header(self, scopes: tuple[str, ...], *, fresh: bool = False) -> str | None:
        c = self.challenge
        if c is None:
            return None
        if c.scheme == "basic":
            if self.creds is None:
                raise Unauthorized(f"{self.registry} requires a login (corral login "
                                   f"{self.registry})", 401)
            raw = f"{self.creds.username}:{self.creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        key = " ".join(sorted(scopes))
        with self._lock:
            cached = self._tokens.get(key)
            if cached and not fresh and cached[1] > time.monotonic():
                return "Bearer " + cached[0]
            token, expires = self._fetch(c, scopes)
            self._tokens[key] = (token, time.monotonic() + max(expires - 10, 5))
            return "Bearer " + token

    def _fetch(self, c: Challenge, scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = c.params.get("realm")
        if not realm:
            raise Unauthorized(f"{self.registry}: Bearer challenge without a realm")
        params: list[tuple[str, str]] = []
        if c.params.get("service"):
            params.append(("service", c.params["service"]))
        for scope in scopes or tuple(filter(None, [c.params.get("scope")])):
            params.append(("scope", scope))
        auth = None
        if self.creds is not None and not self.creds.identity_token:
            auth = (self.creds.username, self.creds.password)
            params.append(("account", self.creds.username))   # as docker sends it
        if self.creds is not None and self.creds.identity_token:
            data = {"grant_type": "refresh_token", "refresh_token": self.creds.identity_token,
                    "client_id": "corral", "service": c.params.get("service", ""),
                    "scope": " ".join(scopes)}
            resp = self.http.post(realm, data=data)
        else:
            resp = self.http.get(realm, params=params, auth=auth)
        if resp.status_code in (401, 403):
            raise Unauthorized(f"{self.registry}: the token server {realm} refused "
                               + ("the credentials" if self.creds else "anonymous access")
                               + f" ({resp.status_code})", resp.status_code)
        if resp.status_code != 200:
            raise Unauthorized(f"{self.registry}: token server {realm} answered "
                               f"{resp.status_code}", resp.status_code)
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
            expires = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not token:
            raise Unauthorized(f"{self.registry}: token server {realm} sent no token")
        return str(token), expires
