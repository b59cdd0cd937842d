"""Image references, normalized the way docker does (distribution/reference).

Grammar (distribution/reference's regexp.go):

```
reference        := name [ ":" tag ] [ "@" digest ]
name             := [domain "/"] remote-name              (at most 255 characters)
domain           := host [":" port]
host             := domain-name | "[" ipv6 "]"
domain-name      := component ("." component)*,  component := [a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
remote-name      := path-component ("/" path-component)*
path-component   := [a-z0-9]+ (separator [a-z0-9]+)*,     separator := [._] | "__" | "-"+
tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
digest           := sha256:<64 hex> | sha512:<128 hex>    (corral.oci.digest)
```

Normalization (ParseNormalizedNamed): the part before the first `/` is a
registry only if it contains `.` or `:`, is `localhost`, or has uppercase
letters; otherwise the registry is `docker.io`. `index.docker.io` becomes
`docker.io`, and single-component names on docker.io get `library/`. The
repository path must be lowercase; a bare 64-hex string is refused (it is an
image id, not a name). With neither tag nor digest the tag is `latest`.
`familiar()` goes back: `docker.io/library/busybox:latest` -> `busybox:latest`.
"""

from __future__ import annotations

import re

from corral.errors import InvalidArgument
from corral.oci import digest as digests

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_COMPONENT}(?:\.{_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?", re.ASCII)
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_ID_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)


class InvalidReference(InvalidArgument):
    """A string is not a valid image reference; the message names it and the part at fault."""


def _fail(text: str, why: str) -> InvalidReference:
    return InvalidReference(f"invalid reference {text!r}: {why}")


def split_domain(name: str) -> tuple[str, str]:
    """docker's splitDockerDomain: `busybox` -> (`docker.io`, `library/busybox`)."""
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"
                   and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


class Reference:
    """A normalized reference: `domain`, `path`, and `tag` and/or `digest`."""

    __slots__ = ("digest", "domain", "path", "tag")

    domain: str
    path: str
    tag: str | None
    digest: str | None

    def __init__(self, domain: str, path: str, tag: str | None = None,
                 digest: str | None = None) -> None:
        text = f"{domain}/{path}"
        if not _DOMAIN_RE.fullmatch(domain):
            raise _fail(text, f"registry {domain!r} is not a valid host[:port]")
        _check_path(text, path)
        if len(text) > NAME_MAX:
            raise _fail(text, f"the repository name is longer than {NAME_MAX} characters")
        if tag is not None and not _TAG_RE.fullmatch(tag):
            raise _fail(text, f"tag {tag!r} is not valid (letters, digits, '_', '.', '-'; "
                              "not starting with '.' or '-'; at most 128)")
        if digest is not None:
            digests.validate(digest, f"reference {text!r}: digest")
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "digest", digest)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Reference is immutable")

    @classmethod
    def parse(cls, text: str, *, default_tag: bool = True) -> Reference:
        """Parse and normalize `text`; InvalidReference naming it and the bad part.

        With `default_tag`, a reference with neither tag nor digest gets `latest`.
        """
        if not isinstance(text, str):
            raise InvalidReference(f"invalid reference {text!r}: not a string")
        if not text:
            raise InvalidReference("invalid reference '': empty")
        if _ID_RE.fullmatch(text):
            raise _fail(text, "a 64-character hex string is an image id, not a repository name")
        rest, at, digest = text.partition("@")
        if at:
            if not digest:
                raise _fail(text, "empty digest after '@'")
            try:
                digests.parse(digest)
            except digests.InvalidDigest as exc:
                raise _fail(text, str(exc)) from None
        name, tag = rest, None
        colon = rest.rfind(":")
        if colon > rest.rfind("/"):
            name, tag = rest[:colon], rest[colon + 1:]
            if not tag:
                raise _fail(text, "empty tag after ':'")
            if not _TAG_RE.fullmatch(tag):
                raise _fail(text, f"tag {tag!r} is not valid (letters, digits, '_', '.', '-'; "
                                  "not starting with '.' or '-'; at most 128)")
        if not name:
            raise _fail(text, "empty repository name")
        domain, path = split_domain(name)
        if path.lower() != path:
            raise _fail(text, f"repository name {path!r} must be lowercase")
        if not _DOMAIN_RE.fullmatch(domain):
            raise _fail(text, f"registry {domain!r} is not a valid host[:port]")
        _check_path(text, path)
        if len(domain) + 1 + len(path) > NAME_MAX:
            raise _fail(text, f"the repository name is longer than {NAME_MAX} characters")
        if tag is None and not at and default_tag:
            tag = DEFAULT_TAG
        return cls(domain, path, tag, digest if at else None)

    # -- views ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """`docker.io/library/busybox` (no tag or digest)."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """`busybox`, `user/app`, `quay.io/x/y`: the name as docker shows it."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX):]:
            return path[len(OFFICIAL_PREFIX):]
        return path

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag is not None else "") + \
            (f"@{self.digest}" if self.digest is not None else "")

    def familiar(self) -> str:
        """`busybox:latest` for docker.io/library/busybox:latest."""
        return self.familiar_name + self._suffix()

    def __str__(self) -> str:
        return self.name + self._suffix()

    def __repr__(self) -> str:
        return f"Reference({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reference):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    def name_only(self) -> Reference:
        return Reference(self.domain, self.path)


def _check_path(text: str, path: str) -> None:
    if not path:
        raise _fail(text, "empty repository name")
    for component in path.split("/"):
        if not _PATH_COMPONENT_RE.fullmatch(component):
            raise _fail(text, f"repository path component {component!r} is not valid "
                              "(lowercase letters and digits, separated by '.', '_', '__' "
                              "or dashes)")


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Reference.parse."""
    return Reference.parse(text, default_tag=default_tag)
