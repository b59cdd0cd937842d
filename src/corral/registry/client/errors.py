"""Errors of the distribution client, each under one of corral.errors' categories.

A registry's error body (distribution spec "Error Codes": `{"errors": [{"code",
"message", "detail"}]}`) is turned into one line naming the operation, the
registry and the status, e.g. `pulling 127.0.0.1:5000/app:1: GET
/v2/app/manifests/1: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown`.
"""

from __future__ import annotations

import json

from corral.errors import CorralError, InvalidArgument, NotFound, Unavailable


class RegistryError(CorralError):
    """A registry answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None,
                 codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class RegistryNotFound(RegistryError, NotFound):
    """The repository, manifest or blob does not exist (404, *_UNKNOWN)."""


class Unauthorized(RegistryError, InvalidArgument):
    """The registry refused the credentials (or needs some and none were given)."""


class RegistryUnavailable(RegistryError, Unavailable):
    """The registry could not be reached or kept failing (connection errors, 5xx)."""


class RegistryRefused(RegistryError, InvalidArgument):
    """The registry refused a request (4xx other than 401/403/404)."""


class InsecureRefused(RegistryError, InvalidArgument):
    """A plain-http or unverified registry was not configured as insecure."""


def error_codes(body: bytes) -> tuple[list[str], str]:
    """(codes, "CODE: message; ...") from a distribution error body, else ([], text)."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return [], " ".join(text.split())[:200]
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return [], ""
    codes, parts = [], []
    for err in errors:
        if not isinstance(err, dict):
            continue
        code = str(err.get("code") or "")
        codes.append(code)
        message = str(err.get("message") or "")
        parts.append(f"{code}: {message}" if message else code)
    return codes, "; ".join(parts)


def from_status(what: str, status: int, reason: str, body: bytes) -> RegistryError:
    codes, detail = error_codes(body)
    message = f"{what}: {status} {reason}" + (f": {detail}" if detail else "")
    kind: type[RegistryError]
    if status in (401, 403):
        kind = Unauthorized
    elif status == 404 or any(c.endswith("_UNKNOWN") for c in codes):
        kind = RegistryNotFound
    elif status >= 500 or status == 429:
        kind = RegistryUnavailable
    else:
        kind = RegistryRefused
    return kind(message, status, tuple(codes))
