"""OCI image types: descriptors, manifests, indexes and image configs.

Thin typed wrappers over the JSON of the OCI Image Spec — descriptor.md,
manifest.md, image-index.md, config.md — with validation that names the
field (`manifest.layers[2].digest: invalid digest ...`), plus:

* media-type constants for OCI and Docker schema 2 (media-types.md
  "Compatibility Matrix"), and the Docker -> OCI mapping;
* `parse_manifest(data, media_type)`: sniffs the type when it is not given,
  accepts Docker schema-2 manifests and manifest lists and converts them to
  their OCI equivalents. The result keeps `source_digest` / `source_media_type`
  (the digest and type of the bytes as given), so an image stays reachable by
  the digest a registry or `repo@sha256:...` reference knows;
* `select_platform(index, os, arch, variant)`: containerd's platform matching
  (platforms.Only: normalized names, arm variants v8 > v7 > v6 > v5, arm64 also
  runs arm, amd64 also runs 386, first match in index order);
* `chain_ids(diff_ids)`: config.md#layer-chainid;
* `to_bytes()`: canonical JSON (sorted keys, no whitespace, UTF-8).

Objects are values (treat them as immutable); `from_json` validates. A parsed
OCI document re-serialized with `to_bytes()` may differ from its source bytes
(unknown fields are dropped, keys sorted): store the source bytes to keep its
digest. Only the standard library is imported (runtime start-up guard).
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence

from corral.errors import InvalidArgument, NotFound
from corral.oci import digest as digests

# -- media types ---------------------------------------------------------------

OCTET_STREAM = "application/octet-stream"

OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"

#: Docker schema-2 media types and their OCI equivalents.
DOCKER_TO_OCI = {
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_MANIFEST_LIST: OCI_INDEX,
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER: OCI_LAYER,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_LAYER_ZSTD: OCI_LAYER_ZSTD,
    DOCKER_FOREIGN_LAYER: OCI_LAYER_NONDISTRIBUTABLE,
    DOCKER_FOREIGN_LAYER_GZIP: OCI_LAYER_NONDISTRIBUTABLE_GZIP,
}
OCI_TO_DOCKER = {oci: docker for docker, oci in DOCKER_TO_OCI.items()}

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

# Layer media type -> compression (None: plain tar).
_LAYER_COMPRESSION: dict[str, str | None] = {
    OCI_LAYER: None, OCI_LAYER_GZIP: "gzip", OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDISTRIBUTABLE: None, OCI_LAYER_NONDISTRIBUTABLE_GZIP: "gzip",
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD: "zstd",
    DOCKER_LAYER: None, DOCKER_LAYER_GZIP: "gzip", DOCKER_LAYER_ZSTD: "zstd",
    DOCKER_FOREIGN_LAYER: None, DOCKER_FOREIGN_LAYER_GZIP: "gzip",
}
LAYER_TYPES = frozenset(_LAYER_COMPRESSION)
FOREIGN_LAYER_TYPES = frozenset({
    OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD, DOCKER_FOREIGN_LAYER, DOCKER_FOREIGN_LAYER_GZIP,
})

# descriptor.md / defs-descriptor.json: RFC 6838 type/subtype.
_MEDIA_TYPE_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")

_INT64_MAX = (1 << 63) - 1


def to_oci_media_type(media_type: str) -> str:
    """The OCI equivalent of a Docker schema-2 media type (others unchanged)."""
    return DOCKER_TO_OCI.get(media_type, media_type)


def is_layer_type(media_type: str) -> bool:
    return media_type in LAYER_TYPES


def layer_compression(media_type: str) -> str | None:
    """"gzip", "zstd" or None (plain tar) for a layer media type; InvalidArgument otherwise."""
    try:
        return _LAYER_COMPRESSION[media_type]
    except KeyError:
        raise InvalidImage(f"{media_type!r} is not a layer media type") from None


# -- errors --------------------------------------------------------------------


class InvalidImage(InvalidArgument):
    """A manifest, index, config or descriptor is malformed; the message names the field."""


class NoMatchingPlatform(NotFound):
    """No manifest of an index is for the wanted platform."""


# -- JSON helpers --------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            # I-JSON (considerations.md): parsers disagree on which one wins.
            raise InvalidImage(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def loads(data: bytes | str, what: str) -> object:
    """Parse JSON (UTF-8, no duplicate keys); InvalidImage naming `what` otherwise."""
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8")
        return json.loads(data, object_pairs_hook=_reject_duplicates)
    except InvalidImage as exc:
        raise InvalidImage(f"{what}: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidImage(f"{what}: not valid JSON: {exc}") from None


def canonical_json(value: object) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 (considerations.md#canonicalization)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _object(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidImage(f"{where}: expected an object, got {_type_name(value)}")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidImage(f"{where}: expected a string, got {_type_name(value)}")
    return value


def _opt_string(obj: Mapping, key: str, where: str) -> str | None:
    value = obj.get(key)
    return None if value is None else _string(value, f"{where}.{key}")


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list):
        raise InvalidImage(f"{where}: expected an array of strings, got {_type_name(value)}")
    for i, item in enumerate(value):
        _string(item, f"{where}[{i}]")
    return value


def _string_map(value: object, where: str) -> dict[str, str]:
    obj = _object(value, where)
    for key, item in obj.items():
        if key == "":
            raise InvalidImage(f"{where}: empty key")
        _string(item, f"{where}[{key!r}]")
    return obj


def _media_type(value: object, where: str) -> str:
    text = _string(value, where)
    if not _MEDIA_TYPE_RE.fullmatch(text):
        raise InvalidImage(f"{where}: {_short(text)} is not a media type (type/subtype)")
    return text


def _schema_version(obj: Mapping, where: str) -> int:
    if "schemaVersion" not in obj:
        raise InvalidImage(f"{where}.schemaVersion: required")
    version = obj["schemaVersion"]
    if type(version) is not int or version != 2:
        raise InvalidImage(f"{where}.schemaVersion: must be 2, got {_short(version)}")
    return version


# -- values --------------------------------------------------------------------


class _Value:
    """Equality and repr over `_fields`; attributes are set once in __init__."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = (f"{f}={getattr(self, f)!r}" for f in self._fields
                 if getattr(self, f) is not None)
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_bytes(self) -> bytes:
        """Canonical JSON of `to_json()`."""
        return canonical_json(self.to_json())  # type: ignore[attr-defined]


class Platform(_Value):
    """The `platform` of an index entry (image-index.md)."""

    __slots__ = ("architecture", "os", "os_features", "os_version", "variant")
    _fields = ("os", "architecture", "variant", "os_version", "os_features")

    os: str
    architecture: str
    variant: str | None
    os_version: str | None
    os_features: tuple[str, ...] | None

    def __init__(self, os: str, architecture: str, variant: str | None = None,
                 os_version: str | None = None,
                 os_features: Iterable[str] | None = None) -> None:
        self._set(os=os, architecture=architecture, variant=variant or None,
                  os_version=os_version,
                  os_features=None if os_features is None else tuple(os_features))

    @classmethod
    def from_json(cls, value: object, where: str = "platform") -> Platform:
        obj = _object(value, where)
        for key in ("os", "architecture"):
            if key not in obj:
                raise InvalidImage(f"{where}.{key}: required")
        features = obj.get("os.features")
        return cls(
            _string(obj["os"], f"{where}.os"),
            _string(obj["architecture"], f"{where}.architecture"),
            _opt_string(obj, "variant", where),
            _opt_string(obj, "os.version", where),
            None if features is None else _strings(features, f"{where}['os.features']"),
        )

    def to_json(self) -> dict:
        out: dict = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version is not None:
            out["os.version"] = self.os_version
        if self.os_features is not None:
            out["os.features"] = list(self.os_features)
        return out

    def normalized(self) -> Platform:
        """containerd's platforms.Normalize: `aarch64` -> `arm64`, `armhf` -> arm/v7, ..."""
        os_, arch, variant = normalize_platform(self.os, self.architecture, self.variant)
        return Platform(os_, arch, variant, self.os_version, self.os_features)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


class Descriptor(_Value):
    """A content descriptor (descriptor.md): media type, digest, size and extras."""

    __slots__ = (
        "annotations",
        "artifact_type",
        "data",
        "digest",
        "media_type",
        "platform",
        "size",
        "urls",
    )
    _fields = ("media_type", "digest", "size", "annotations", "platform", "urls",
               "artifact_type", "data")

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None
    platform: Platform | None
    urls: tuple[str, ...] | None
    artifact_type: str | None
    data: str | None

    def __init__(self, media_type: str, digest: str, size: int, *,
                 annotations: Mapping[str, str] | None = None,
                 platform: Platform | None = None, urls: Iterable[str] | None = None,
                 artifact_type: str | None = None, data: str | None = None) -> None:
        digests.validate(digest, "descriptor.digest")
        if type(size) is not int or not 0 <= size <= _INT64_MAX:
            raise InvalidImage(f"descriptor.size: must be a non-negative int64, got {_short(size)}")
        self._set(media_type=media_type, digest=digest, size=size,
                  annotations=None if annotations is None else dict(annotations),
                  platform=platform, urls=None if urls is None else tuple(urls),
                  artifact_type=artifact_type, data=data)

    @classmethod
    def from_json(cls, value: object, where: str = "descriptor") -> Descriptor:
        obj = _object(value, where)
        for key in ("mediaType", "digest", "size"):
            if key not in obj:
                raise InvalidImage(f"{where}.{key}: required")
        media_type = _media_type(obj["mediaType"], f"{where}.mediaType")
        digest = digests.validate(obj["digest"], f"{where}.digest")
        size = obj["size"]
        if type(size) is not int or not 0 <= size <= _INT64_MAX:
            raise InvalidImage(f"{where}.size: must be a non-negative int64, got {_short(size)}")
        annotations = obj.get("annotations")
        if annotations is not None:
            _string_map(annotations, f"{where}.annotations")
        urls = obj.get("urls")
        if urls is not None:
            _strings(urls, f"{where}.urls")
        platform = obj.get("platform")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None:
            _media_type(artifact_type, f"{where}.artifactType")
        data = obj.get("data")
        if data is not None:
            _check_embedded(_string(data, f"{where}.data"), digest, size, f"{where}.data")
        return cls(media_type, digest, size, annotations=annotations,
                   platform=None if platform is None else Platform.from_json(
                       platform, f"{where}.platform"),
                   urls=urls, artifact_type=artifact_type, data=data)

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls is not None:
            out["urls"] = list(self.urls)
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        if self.data is not None:
            out["data"] = self.data
        return out

    def replace(self, **changes: object) -> Descriptor:
        """A copy with some fields changed, e.g. `desc.replace(media_type=OCI_MANIFEST)`."""
        values = {f: getattr(self, f) for f in self._fields}
        values.update(changes)
        return Descriptor(values.pop("media_type"), values.pop("digest"),  # type: ignore[arg-type]
                          values.pop("size"), **values)  # type: ignore[arg-type]


def _check_embedded(data: str, digest: str, size: int, where: str) -> None:
    import base64

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"{where}: not valid base64") from None
    if len(raw) != size:
        raise InvalidImage(f"{where}: embedded content is {len(raw)} bytes, size says {size}")
    actual = digests.of_bytes(raw, digests.algorithm(digest))
    if actual != digest:
        raise InvalidImage(f"{where}: embedded content has digest {actual}, "
                           f"descriptor says {digest}")


def _descriptors(value: object, where: str, convert: bool) -> tuple[Descriptor, ...]:
    if not isinstance(value, list):
        raise InvalidImage(f"{where}: expected an array, got {_type_name(value)}")
    out = []
    for i, item in enumerate(value):
        desc = Descriptor.from_json(item, f"{where}[{i}]")
        if convert and desc.media_type in DOCKER_TO_OCI:
            desc = desc.replace(media_type=DOCKER_TO_OCI[desc.media_type])
        out.append(desc)
    return tuple(out)


class Manifest(_Value):
    """An image manifest (manifest.md), always with OCI media types.

    `source_media_type` / `source_digest` describe the bytes it was parsed from
    (a Docker schema-2 manifest is converted; its digest stays the one that
    names the image in a registry). Both are None for a manifest built in code.
    """

    __slots__ = (
        "annotations",
        "artifact_type",
        "config",
        "layers",
        "source_digest",
        "source_media_type",
        "subject",
    )
    _fields = ("config", "layers", "annotations", "subject", "artifact_type")

    schema_version = 2
    media_type = OCI_MANIFEST

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] | None
    subject: Descriptor | None
    artifact_type: str | None
    source_media_type: str | None
    source_digest: str | None

    def __init__(self, config: Descriptor, layers: Iterable[Descriptor], *,
                 annotations: Mapping[str, str] | None = None,
                 subject: Descriptor | None = None, artifact_type: str | None = None,
                 source_media_type: str | None = None,
                 source_digest: str | None = None) -> None:
        self._set(config=config, layers=tuple(layers),
                  annotations=None if annotations is None else dict(annotations),
                  subject=subject, artifact_type=artifact_type,
                  source_media_type=source_media_type, source_digest=source_digest)

    @property
    def converted(self) -> bool:
        """True if parsed from a Docker schema-2 manifest."""
        return self.source_media_type is not None and self.source_media_type != OCI_MANIFEST

    @classmethod
    def from_json(cls, value: object, where: str = "manifest", *,
                  source_media_type: str | None = None,
                  source_digest: str | None = None) -> Manifest:
        obj = _object(value, where)
        _schema_version(obj, where)
        declared = obj.get("mediaType")
        if declared is not None and declared not in MANIFEST_TYPES:
            raise InvalidImage(f"{where}.mediaType: {_short(declared)} is not an image manifest "
                               f"type ({OCI_MANIFEST} or {DOCKER_MANIFEST})")
        convert = declared == DOCKER_MANIFEST or source_media_type == DOCKER_MANIFEST
        for key in ("config", "layers"):
            if key not in obj:
                raise InvalidImage(f"{where}.{key}: required")
        config = Descriptor.from_json(obj["config"], f"{where}.config")
        if convert and config.media_type in DOCKER_TO_OCI:
            config = config.replace(media_type=DOCKER_TO_OCI[config.media_type])
        layers = _descriptors(obj["layers"], f"{where}.layers", convert)
        annotations = obj.get("annotations")
        if annotations is not None:
            _string_map(annotations, f"{where}.annotations")
        subject = obj.get("subject")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None:
            _media_type(artifact_type, f"{where}.artifactType")
        return cls(config, layers, annotations=annotations,
                   subject=None if subject is None else Descriptor.from_json(
                       subject, f"{where}.subject"),
                   artifact_type=artifact_type,
                   source_media_type=source_media_type or declared or OCI_MANIFEST,
                   source_digest=source_digest)

    def to_json(self) -> dict:
        out: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                     "config": self.config.to_json(),
                     "layers": [layer.to_json() for layer in self.layers]}
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        return out

    def descriptor(self, **extra: object) -> Descriptor:
        """A descriptor of `to_bytes()` (the canonical OCI serialization)."""
        data = self.to_bytes()
        return Descriptor(OCI_MANIFEST, digests.of_bytes(data), len(data),
                          **extra)  # type: ignore[arg-type]


class Index(_Value):
    """An image index (image-index.md), always with OCI media types; see Manifest for source_*."""

    __slots__ = (
        "annotations",
        "artifact_type",
        "manifests",
        "source_digest",
        "source_media_type",
        "subject",
    )
    _fields = ("manifests", "annotations", "subject", "artifact_type")

    schema_version = 2
    media_type = OCI_INDEX

    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] | None
    subject: Descriptor | None
    artifact_type: str | None
    source_media_type: str | None
    source_digest: str | None

    def __init__(self, manifests: Iterable[Descriptor], *,
                 annotations: Mapping[str, str] | None = None,
                 subject: Descriptor | None = None, artifact_type: str | None = None,
                 source_media_type: str | None = None,
                 source_digest: str | None = None) -> None:
        self._set(manifests=tuple(manifests),
                  annotations=None if annotations is None else dict(annotations),
                  subject=subject, artifact_type=artifact_type,
                  source_media_type=source_media_type, source_digest=source_digest)

    @property
    def converted(self) -> bool:
        return self.source_media_type is not None and self.source_media_type != OCI_INDEX

    @classmethod
    def from_json(cls, value: object, where: str = "index", *,
                  source_media_type: str | None = None,
                  source_digest: str | None = None) -> Index:
        obj = _object(value, where)
        _schema_version(obj, where)
        declared = obj.get("mediaType")
        if declared is not None and declared not in INDEX_TYPES:
            raise InvalidImage(f"{where}.mediaType: {_short(declared)} is not an image index "
                               f"type ({OCI_INDEX} or {DOCKER_MANIFEST_LIST})")
        convert = declared == DOCKER_MANIFEST_LIST or source_media_type == DOCKER_MANIFEST_LIST
        if "manifests" not in obj:
            raise InvalidImage(f"{where}.manifests: required")
        manifests = _descriptors(obj["manifests"], f"{where}.manifests", convert)
        annotations = obj.get("annotations")
        if annotations is not None:
            _string_map(annotations, f"{where}.annotations")
        subject = obj.get("subject")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None:
            _media_type(artifact_type, f"{where}.artifactType")
        return cls(manifests, annotations=annotations,
                   subject=None if subject is None else Descriptor.from_json(
                       subject, f"{where}.subject"),
                   artifact_type=artifact_type,
                   source_media_type=source_media_type or declared or OCI_INDEX,
                   source_digest=source_digest)

    def to_json(self) -> dict:
        out: dict = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                     "manifests": [m.to_json() for m in self.manifests]}
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        return out

    def descriptor(self, **extra: object) -> Descriptor:
        data = self.to_bytes()
        return Descriptor(OCI_INDEX, digests.of_bytes(data), len(data),
                          **extra)  # type: ignore[arg-type]


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index; Docker schema-2 documents become their OCI equivalents.

    `media_type` (e.g. a Content-Type or the descriptor's mediaType) is used
    when the document has no `mediaType` field; without either the kind is
    sniffed (`manifests` -> index, `config`+`layers` -> manifest). A declared
    type of the other kind than `media_type` is refused. Docker schema 1 is
    refused. The result's `source_digest` is the sha256 of `data`.
    """
    obj = _object(loads(data, "manifest"), "manifest")
    if obj.get("schemaVersion") == 1 or media_type in (DOCKER_SCHEMA1_MANIFEST,
                                                       DOCKER_SCHEMA1_SIGNED_MANIFEST):
        raise InvalidImage("manifest: Docker schema 1 manifests are not supported "
                           "(convert the image to schema 2 or OCI)")
    declared = obj.get("mediaType")
    if declared is not None:
        _media_type(declared, "manifest.mediaType")
    hint = media_type if media_type in MANIFEST_TYPES or media_type in INDEX_TYPES else None
    if declared is not None:
        if declared not in MANIFEST_TYPES and declared not in INDEX_TYPES:
            raise InvalidImage(f"manifest.mediaType: unsupported media type {declared!r}")
        if hint is not None and (hint in MANIFEST_TYPES) != (declared in MANIFEST_TYPES):
            raise InvalidImage(f"manifest.mediaType: the document says {declared!r}, "
                               f"but {hint!r} was expected")
        kind = declared
    elif hint is not None:
        kind = hint
    elif "manifests" in obj:
        kind = OCI_INDEX
    elif "config" in obj or "layers" in obj:
        kind = OCI_MANIFEST
    else:
        raise InvalidImage("manifest: cannot tell the media type (no mediaType, manifests "
                           "or config/layers field)")
    source_digest = digests.of_bytes(data)
    if kind in INDEX_TYPES:
        return Index.from_json(obj, "index", source_media_type=kind, source_digest=source_digest)
    return Manifest.from_json(obj, "manifest", source_media_type=kind,
                              source_digest=source_digest)


# -- image config --------------------------------------------------------------

_CONFIG_LIST_FIELDS = ("Env", "Entrypoint", "Cmd")
_CONFIG_STRING_FIELDS = ("User", "WorkingDir", "StopSignal")
_CONFIG_OBJECT_FIELDS = ("ExposedPorts", "Volumes")


class ImageConfig:
    """An image configuration (config.md) — OCI or Docker's container.image.v1+json.

    `raw` is the JSON object (kept whole: its bytes' digest is the image id, so
    Docker-only fields are preserved). Accessors return None/empty for absent
    or null optional fields.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping, where: str = "config") -> None:
        self.raw = dict(_object(raw, where))
        _validate_config(self.raw, where)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "config") -> ImageConfig:
        return cls(_object(loads(data, where), where), where)

    def to_json(self) -> dict:
        return self.raw

    def to_bytes(self) -> bytes:
        return canonical_json(self.raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageConfig) and self.raw == other.raw

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ImageConfig({self.platform}, diff_ids={len(self.diff_ids)})"

    # top level
    @property
    def architecture(self) -> str:
        return self.raw["architecture"]

    @property
    def os(self) -> str:
        return self.raw["os"]

    @property
    def variant(self) -> str | None:
        return self.raw.get("variant")

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant, self.raw.get("os.version"),
                        self.raw.get("os.features"))

    @property
    def created(self) -> str | None:
        return self.raw.get("created")

    @property
    def author(self) -> str | None:
        return self.raw.get("author")

    @property
    def diff_ids(self) -> list[str]:
        return list(self.raw["rootfs"]["diff_ids"])

    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def history(self) -> list[dict]:
        return list(self.raw.get("history") or [])

    # execution parameters ("config")
    @property
    def config(self) -> dict:
        return self.raw.get("config") or {}

    @property
    def entrypoint(self) -> list[str] | None:
        return self.config.get("Entrypoint")

    @property
    def cmd(self) -> list[str] | None:
        return self.config.get("Cmd")

    @property
    def env(self) -> list[str]:
        return list(self.config.get("Env") or [])

    @property
    def working_dir(self) -> str:
        return self.config.get("WorkingDir") or ""

    @property
    def user(self) -> str:
        return self.config.get("User") or ""

    @property
    def exposed_ports(self) -> dict[str, dict]:
        return dict(self.config.get("ExposedPorts") or {})

    @property
    def volumes(self) -> dict[str, dict]:
        return dict(self.config.get("Volumes") or {})

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.get("Labels") or {})

    @property
    def stop_signal(self) -> str | None:
        return self.config.get("StopSignal") or None


def parse_config(data: bytes) -> ImageConfig:
    """ImageConfig.from_bytes."""
    return ImageConfig.from_bytes(data)


def _validate_config(raw: dict, where: str) -> None:
    for key in ("architecture", "os"):
        if key not in raw:
            raise InvalidImage(f"{where}.{key}: required")
        _string(raw[key], f"{where}.{key}")
    for key in ("created", "author", "variant", "os.version"):
        if raw.get(key) is not None:
            _string(raw[key], f"{where}.{key}" if "." not in key else f"{where}[{key!r}]")
    if raw.get("os.features") is not None:
        _strings(raw["os.features"], f"{where}['os.features']")
    if "rootfs" not in raw:
        raise InvalidImage(f"{where}.rootfs: required")
    rootfs = _object(raw["rootfs"], f"{where}.rootfs")
    if rootfs.get("type") != "layers":
        raise InvalidImage(f"{where}.rootfs.type: must be 'layers', got {_short(rootfs.get('type'))}")
    if "diff_ids" not in rootfs:
        raise InvalidImage(f"{where}.rootfs.diff_ids: required")
    diff_ids = rootfs["diff_ids"]
    if not isinstance(diff_ids, list):
        raise InvalidImage(f"{where}.rootfs.diff_ids: expected an array, got "
                           f"{_type_name(diff_ids)}")
    for i, diff_id in enumerate(diff_ids):
        digests.validate(diff_id, f"{where}.rootfs.diff_ids[{i}]")
    history = raw.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise InvalidImage(f"{where}.history: expected an array, got {_type_name(history)}")
        for i, entry in enumerate(history):
            here = f"{where}.history[{i}]"
            entry = _object(entry, here)
            for key in ("created", "author", "created_by", "comment"):
                if entry.get(key) is not None:
                    _string(entry[key], f"{here}.{key}")
            if entry.get("empty_layer") is not None and not isinstance(entry["empty_layer"], bool):
                raise InvalidImage(f"{here}.empty_layer: expected a boolean, got "
                                   f"{_type_name(entry['empty_layer'])}")
    config = raw.get("config")
    if config is None:
        return
    here = f"{where}.config"
    config = _object(config, here)
    for key in _CONFIG_LIST_FIELDS:
        if config.get(key) is not None:
            _strings(config[key], f"{here}.{key}")
    for key in _CONFIG_STRING_FIELDS:
        if config.get(key) is not None:
            _string(config[key], f"{here}.{key}")
    for key in _CONFIG_OBJECT_FIELDS:
        value = config.get(key)
        if value is not None:
            for name, item in _object(value, f"{here}.{key}").items():
                _object(item, f"{here}.{key}[{name!r}]")
    if config.get("Labels") is not None:
        _string_map(config["Labels"], f"{here}.Labels")
    if config.get("ArgsEscaped") is not None and not isinstance(config["ArgsEscaped"], bool):
        raise InvalidImage(f"{here}.ArgsEscaped: expected a boolean, got "
                           f"{_type_name(config['ArgsEscaped'])}")


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """ChainID of each prefix of the layer stack (config.md#layer-chainid).

    ChainID(L0) = DiffID(L0); ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)).
    """
    out: list[str] = []
    for i, diff_id in enumerate(diff_ids):
        digests.validate(diff_id, f"diff_ids[{i}]")
        if not out:
            out.append(diff_id)
        else:
            out.append(digests.of_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


# -- platforms (containerd's platforms package) ----------------------------------

_ARCH_ALIASES = {"i386": "386", "x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64",
                 "armhf": "arm", "armel": "arm"}


def normalize_platform(os: str, arch: str, variant: str | None = None
                       ) -> tuple[str, str, str | None]:
    """(os, architecture, variant) as containerd's platforms.Normalize returns them.

    Lowercased; `macos` -> darwin; i386 -> 386; x86_64/x86-64 -> amd64 (variant
    v1 dropped); aarch64 -> arm64 (variant 8/v8 dropped); armhf -> arm/v7,
    armel -> arm/v6; arm's variant defaults to v7 and `7` -> `v7`.
    """
    os = os.lower()
    if os == "macos":
        os = "darwin"
    raw_arch = arch.lower()
    variant = (variant or "").lower() or None
    arch = _ARCH_ALIASES.get(raw_arch, raw_arch)
    if raw_arch == "armhf":
        variant = "v7"
    elif raw_arch == "armel":
        variant = "v6"
    if arch == "amd64":
        if variant == "v1":
            variant = None
    elif arch == "arm64":
        if variant in ("8", "v8"):
            variant = None
    elif arch == "arm":
        if variant is None:
            variant = "v7"
        elif variant in ("5", "6", "7", "8"):
            variant = "v" + variant
    return os, arch, variant


def _compatible(os: str, arch: str, variant: str | None) -> list[tuple[str, str, str | None]]:
    """The platforms a host runs, best first (containerd's platformVector)."""
    vector: list[tuple[str, str, str | None]] = [(os, arch, variant)]
    number = None
    if variant and variant.startswith("v") and variant[1:].isdigit():
        number = int(variant[1:])
    if arch == "amd64":
        if number is not None and number > 1:
            vector += [(os, "amd64", None if n == 1 else f"v{n}") for n in range(number - 1, 0, -1)]
        vector.append((os, "386", None))
    elif arch == "arm":
        if number is not None and number > 5:
            vector += [(os, "arm", f"v{n}") for n in range(number - 1, 4, -1)]
    elif arch == "arm64":
        vector += _compatible(os, "arm", variant or "v8")
    return vector


def select_platform(index: Index, os: str = "linux", arch: str = "amd64",
                    variant: str | None = None) -> Descriptor:
    """The index entry to run on os/arch/variant (first match of the best platform).

    Entries without a platform or not pointing to a manifest or index are
    skipped. NoMatchingPlatform lists what the index offers.
    """
    wanted = normalize_platform(os, arch, variant)
    candidates = []
    for desc in index.manifests:
        if desc.platform is None or (desc.media_type not in MANIFEST_TYPES
                                     and desc.media_type not in INDEX_TYPES):
            continue
        p = desc.platform
        candidates.append((normalize_platform(p.os, p.architecture, p.variant), desc))
    for platform in _compatible(*wanted):
        for normalized, desc in candidates:
            if normalized == platform:
                return desc
    offered = ", ".join(str(d.platform) for _, d in candidates) or "none"
    want = "/".join(p for p in wanted if p)
    raise NoMatchingPlatform(f"no manifest for platform {want} in the index "
                             f"(it offers: {offered})")
