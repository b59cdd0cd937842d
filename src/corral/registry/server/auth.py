"""Basic authentication for the registry server: an htpasswd file (bcrypt
entries, as distribution's `htpasswd` auth) or one plain `user:password`.

A request without valid credentials gets 401 UNAUTHORIZED with
`WWW-Authenticate: Basic realm="..."`. bcrypt is slow by design, so a
successful check is cached (keyed by the user and a SHA-256 of the
password) for the server's lifetime; the cache is emptied when the htpasswd
file changes. `bcrypt` is imported only when an htpasswd file is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from pathlib import Path
from typing import Protocol

from corral.errors import InvalidArgument


class Authenticator(Protocol):
    realm: str

    def check(self, authorization: str | None) -> bool: ...


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class PlainAuth:
    """One user and password (tests, throwaway registries)."""

    def __init__(self, user: str, password: str, realm: str = "corral-registry") -> None:
        if not user or ":" in user:
            raise InvalidArgument(f"--user: invalid user name {user!r}")
        self.user = user.encode()
        self.password = password.encode()
        self.realm = realm

    @classmethod
    def from_spec(cls, spec: str, realm: str = "corral-registry") -> PlainAuth:
        user, sep, password = spec.partition(":")
        if not sep:
            raise InvalidArgument(f"--user: expected USER:PASSWORD, got {spec!r}")
        return cls(user, password, realm)

    def check(self, authorization: str | None) -> bool:
        creds = parse_basic(authorization)
        if creds is None:
            return False
        ok_user = hmac.compare_digest(creds[0].encode(), self.user)
        ok_password = hmac.compare_digest(creds[1].encode(), self.password)
        return ok_user and ok_password


class HtpasswdAuth:
    """`user:$2y$...` lines (bcrypt; `htpasswd -B`); `#` comments and blank lines skipped."""

    def __init__(self, path: Path | str, realm: str = "corral-registry") -> None:
        self.path = Path(path)
        self.realm = realm
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, bytes] = {}
        self._ok: set[tuple[str, bytes]] = set()
        self._load()
        try:
            import bcrypt  # noqa: F401
        except ImportError:  # pragma: no cover - a dependency
            raise InvalidArgument("--htpasswd needs the 'bcrypt' package") from None

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
            text = self.path.read_text()
        except OSError as exc:
            raise InvalidArgument(f"htpasswd file {self.path}: {exc.strerror}") from None
        users = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not hashed.startswith(("$2y$", "$2a$", "$2b$")):
                raise InvalidArgument(f"htpasswd file {self.path}, line {number}: only "
                                      "bcrypt entries (user:$2y$...) are supported")
            users[user] = hashed.encode()
        self._users = users
        self._ok = set()
        self._stamp = (st.st_mtime_ns, st.st_size)

    def _maybe_reload(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return
        if (st.st_mtime_ns, st.st_size) != self._stamp:
            try:
                self._load()
            except InvalidArgument:
                pass  # keep the last good file

    def check(self, authorization: str | None) -> bool:
        creds = parse_basic(authorization)
        if creds is None:
            return False
        user, password = creds
        key = (user, hashlib.sha256(password.encode()).digest())
        with self._lock:
            self._maybe_reload()
            if key in self._ok:
                return True
            hashed = self._users.get(user)
        if hashed is None:
            return False
        import bcrypt

        if hashed.startswith(b"$2y$"):
            hashed = b"$2b$" + hashed[4:]
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._ok.add(key)
        return ok


def make_htpasswd_line(user: str, password: str, rounds: int = 5) -> str:
    """A bcrypt htpasswd line (what `htpasswd -nbB` prints)."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
    return f"{user}:{hashed}"
