"""URL routing and the validation of what a URL carries (spec.md "Endpoints").

`<name>` must match the spec's repository grammar (and be at most 255
characters); a tag `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`; a digest goes through
`corral.oci.digest.parse` (sha256/sha512 only). Nothing else reaches a path:
every component of a valid name starts and ends with `[a-z0-9]`, so `..`,
`.`, `_layers` and empty components are impossible.

A name may itself contain `blobs`, `manifests`, `tags`... (`a/blobs/b` is a
valid repository): the patterns are anchored at the end and the name is
greedy, as in distribution's router.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from corral.oci import digest as digests
from corral.registry.server.errors import RegistryError

NAME_MAX = 255
NAME_RE = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*",
    re.ASCII)
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", re.ASCII)
UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}", re.ASCII)

#: (route, pattern); first match wins. `uploads` before `blobs`.
_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("base", re.compile(r"/v2/?")),
    ("catalog", re.compile(r"/v2/_catalog")),
    ("upload_start", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/?")),
    ("upload", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<ref>[^/]+)")),
    ("blob", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<ref>[^/]+)")),
    ("manifest", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    ("tags", re.compile(r"/v2/(?P<name>.+)/tags/list")),
    ("referrers", re.compile(r"/v2/(?P<name>.+)/referrers/(?P<ref>[^/]+)")),
)

#: Methods each route answers; anything else is 405 UNSUPPORTED.
METHODS: dict[str, frozenset[str]] = {
    "base": frozenset({"GET", "HEAD"}),
    "catalog": frozenset({"GET"}),
    "upload_start": frozenset({"POST"}),
    "upload": frozenset({"GET", "PATCH", "PUT", "DELETE"}),
    "blob": frozenset({"GET", "HEAD", "DELETE"}),
    "manifest": frozenset({"GET", "HEAD", "PUT", "DELETE"}),
    "tags": frozenset({"GET"}),
    "referrers": frozenset({"GET"}),
}


@dataclass(frozen=True)
class Route:
    kind: str
    name: str = ""
    ref: str = ""


def is_valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and NAME_RE.fullmatch(name) is not None


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise RegistryError("NAME_INVALID", f"invalid repository name {name[:300]!r}",
                            detail={"name": name[:300]})
    return name


def check_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError("TAG_INVALID", f"invalid tag {tag[:200]!r}", detail={"tag": tag[:200]})
    return tag


def check_digest(value: str, code: str = "DIGEST_INVALID") -> str:
    """A valid sha256/sha512 digest, else `code` (400)."""
    try:
        return digests.validate(value, "digest")
    except digests.InvalidDigest as exc:
        raise RegistryError(code, str(exc), status=400, detail={"digest": value[:200]}) from None


def is_digest(ref: str) -> bool:
    """A manifest reference is a digest if it has a colon (tags cannot)."""
    return ":" in ref


def match(path: str, method: str) -> Route:
    """The route for an (already %-decoded) path; names and refs are validated here."""
    for kind, pattern in _ROUTES:
        m = pattern.fullmatch(path)
        if m is None:
            continue
        if method not in METHODS[kind]:
            raise RegistryError("UNSUPPORTED", f"{method} is not supported on {path[:200]}",
                                headers=[("Allow", ", ".join(sorted(METHODS[kind])))])
        groups = m.groupdict()
        name = groups.get("name") or ""
        ref = groups.get("ref") or ""
        if name:
            check_name(name)
        if kind in ("blob", "referrers"):
            check_digest(ref)
        elif kind == "manifest":
            if is_digest(ref):
                check_digest(ref)
            else:
                check_tag(ref)
        elif kind == "upload" and not UPLOAD_ID_RE.fullmatch(ref):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"unknown upload {ref[:100]!r}")
        return Route(kind, name, ref)
    raise RegistryError("NAME_UNKNOWN", f"no such endpoint: {path[:200]}", status=404)
