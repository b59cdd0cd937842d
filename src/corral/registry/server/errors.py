"""Registry errors: the distribution spec's error codes (spec.md "Error Codes") with
their HTTP status, and the one table mapping Corral's error categories to them.

A handler raises `RegistryError(code, message, detail)`; the HTTP edge turns it
into `{"errors": [{"code", "message", "detail"}]}` with the code's status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.errors import CorralError, InvalidArgument, NotFound

#: code -> (HTTP status, default message). Codes from the spec, plus SIZE_INVALID's
#: 413 use for an oversized manifest and the legacy TAG_INVALID.
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
}


@dataclass
class ErrorEntry:
    code: str
    message: str
    detail: object = None

    def to_json(self) -> dict:
        out: dict = {"code": self.code, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


@dataclass
class RegistryError(CorralError):
    """An API error; `status` defaults to the code's, `extra` adds entries (same status)."""

    code: str
    message: str = ""
    detail: object = None
    status: int = 0
    extra: list[ErrorEntry] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        default_status, default_message = CODES[self.code]
        if not self.status:
            self.status = default_status
        if not self.message:
            self.message = default_message
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def entries(self) -> list[ErrorEntry]:
        return [ErrorEntry(self.code, self.message, self.detail), *self.extra]

    def to_json(self) -> dict:
        return {"errors": [e.to_json() for e in self.entries()]}


def from_category(exc: CorralError) -> RegistryError:
    """Corral's categories at the HTTP edge (anything else is a 500 upstream)."""
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, NotFound):
        return RegistryError("NAME_UNKNOWN", str(exc))
    if isinstance(exc, InvalidArgument):
        return RegistryError("BLOB_UPLOAD_INVALID", str(exc))
    return RegistryError("UNSUPPORTED", str(exc), status=500)
