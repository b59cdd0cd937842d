"""The `oci:DIR[:REF]` transport: an OCI image layout directory (image-spec image-layout.md).

```
DIR/oci-layout          {"imageLayoutVersion": "1.0.0"}
DIR/index.json          an image index; entries name images with
                        org.opencontainers.image.ref.name annotations
DIR/blobs/<alg>/<hex>   content addressed by digest
```

Reading (`LayoutSource`, over a directory or — for `oci-archive:` — the members
of a tar): `REF` picks the index entries whose ref.name is REF; without REF every
entry is an image. An entry that is itself an index (a multi-platform image) is
resolved with `select_platform` (linux/amd64 by default). Image names come from
`io.containerd.image.name`, else from a ref.name that is a full reference
(`docker.io/library/busybox:latest`); a bare tag (`latest`, as `skopeo copy
... oci:dir:latest` writes) names no image.

Writing (`LayoutDestination`): blobs are written to a temporary name, verified
against their digest, and renamed; an existing layout is extended (an entry with
the same ref.name is replaced); `index.json` is written temp -> rename. The
manifest is the source's OCI bytes when the layers were stored unchanged (its
digest survives the copy), else its canonical OCI serialization.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from corral.image.transports._files import DirFiles, Files
from corral.image.transports.types import (
    CONTAINERD_NAME,
    REF_NAME,
    ArchiveNotFound,
    ImageNotInArchive,
    Opener,
    SourceImage,
    TransportError,
)
from corral.oci import digest as digests
from corral.oci.image import (
    CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    canonical_json,
    parse_manifest,
    select_platform,
)

LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = "1.0.0"


def blob_path(digest: str) -> str:
    alg, hex_ = digests.parse(digest)
    return f"blobs/{alg}/{hex_}"


def name_of(annotations: dict | None) -> str | None:
    """The normalized image name an index entry's annotations give, if any."""
    from corral.oci.reference import InvalidReference, Reference

    annotations = annotations or {}
    for key in (CONTAINERD_NAME, REF_NAME):
        value = annotations.get(key)
        if not value or ("/" not in value and ":" not in value and "@" not in value):
            continue  # a bare tag names no repository
        try:
            return str(Reference.parse(value))
        except InvalidReference:
            continue
    return None


class LayoutSource:
    def __init__(self, files: Files, ref: str | None, *, platform: tuple[str, str] = (
            "linux", "amd64")) -> None:
        self.files = files
        self.ref = ref
        self.platform = platform
        if not files.exists(LAYOUT_FILE):
            raise TransportError(f"{files.name}: not an OCI image layout (no {LAYOUT_FILE})")
        try:
            layout = json.loads(files.read(LAYOUT_FILE))
        except ValueError:
            raise TransportError(f"{files.name}: {LAYOUT_FILE} is not valid JSON") from None
        if not isinstance(layout, dict) or not str(
                layout.get("imageLayoutVersion", "")).startswith("1."):
            raise TransportError(f"{files.name}: unsupported image layout version in "
                                 f"{LAYOUT_FILE}: {layout!r}")
        if not files.exists("index.json"):
            raise TransportError(f"{files.name}: not an OCI image layout (no index.json)")

    def _blob(self, desc: Descriptor, limit: int = 16 << 20) -> bytes:
        if desc.size > limit:
            raise TransportError(f"{self.files.name}: blob {desc.digest} is {desc.size} bytes, "
                                 f"more than the {limit} allowed for metadata")
        try:
            data = self.files.read(blob_path(desc.digest), limit)
        except ArchiveNotFound:
            raise TransportError(f"{self.files.name}: blob {desc.digest} is missing") from None
        digests.verify(data, desc.digest, f"{self.files.name}: blob {desc.digest}")
        return data

    def _manifest_of(self, desc: Descriptor, depth: int = 0) -> tuple[Manifest, bytes]:
        data = self._blob(desc)
        parsed = parse_manifest(data, desc.media_type)
        if isinstance(parsed, Index):
            if depth > 4:
                raise TransportError(f"{self.files.name}: indexes nested too deep")
            chosen = select_platform(parsed, *self.platform)
            return self._manifest_of(chosen, depth + 1)
        return parsed, data

    def images(self) -> list[SourceImage]:
        index = parse_manifest(self.files.read("index.json"), OCI_INDEX)
        if not isinstance(index, Index):
            raise TransportError(f"{self.files.name}: index.json is not an image index")
        entries = [d for d in index.manifests
                   if d.media_type in MANIFEST_TYPES or d.media_type in INDEX_TYPES]
        if self.ref is not None:
            wanted = [d for d in entries if (d.annotations or {}).get(REF_NAME) == self.ref]
            if not wanted:
                named = [d for d in entries if name_of(d.annotations) is not None]
                from corral.oci.reference import InvalidReference, Reference
                try:
                    ref = str(Reference.parse(self.ref))
                except InvalidReference:
                    ref = None
                wanted = [d for d in named if name_of(d.annotations) == ref]
            if not wanted:
                raise ImageNotInArchive(f"{self.files.name}: no image with ref {self.ref!r}")
            entries = wanted[:1]
        if not entries:
            raise ImageNotInArchive(f"{self.files.name}: the index lists no image")
        out = []
        for desc in entries:
            manifest, data = self._manifest_of(desc)
            if manifest.config.media_type not in CONFIG_TYPES:
                raise TransportError(f"{self.files.name}: manifest {desc.digest} is not an "
                                     f"image (config type {manifest.config.media_type})")
            config = self._blob(manifest.config)
            name = name_of(desc.annotations)
            keep = data if not manifest.converted else None
            out.append(SourceImage(manifest, config, keep, (name,) if name else ()))
        return out

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        try:
            return self.files.open(blob_path(desc.digest))
        except ArchiveNotFound:
            raise TransportError(f"{self.files.name}: blob {desc.digest} is missing") from None

    def close(self) -> None:
        self.files.close()


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class LayoutDestination:
    """Writes into `root` (created if missing); see the module docstring."""

    def __init__(self, root: Path, ref: str | None = None, *,
                 ref_from_names: bool = True) -> None:
        self.root = Path(root)
        self.ref = ref
        self.ref_from_names = ref_from_names
        self._created_root = not self.root.exists()
        self._written: list[Path] = []
        self._entries: list[Descriptor] = []
        self.committed = False
        if self.root.exists() and not self.root.is_dir():
            raise TransportError(f"{self.root}: exists and is not a directory")
        if self.root.is_dir() and any(self.root.iterdir()) \
                and not (self.root / LAYOUT_FILE).is_file():
            raise TransportError(f"{self.root}: not empty and not an OCI image layout")
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def _put(self, digest: str, stream: BinaryIO | None, data: bytes | None = None) -> int:
        path = self.root / blob_path(digest)
        if path.is_file():
            return path.stat().st_size
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        hasher = digests.Hasher(digests.algorithm(digest))
        with open(tmp, "wb") as out:
            if data is not None:
                hasher.update(data)
                out.write(data)
            else:
                assert stream is not None
                while chunk := stream.read(1 << 20):
                    hasher.update(chunk)
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if hasher.digest() != digest:
            tmp.unlink()
            raise digests.DigestMismatch(f"blob digest mismatch: expected {digest}, got "
                                         f"{hasher.digest()}", digest, hasher.digest())
        os.replace(tmp, path)
        self._written.append(path)
        return hasher.size

    def put_config(self, desc: Descriptor, data: bytes) -> Descriptor:
        self._put(desc.digest, None, data)
        return Descriptor(OCI_CONFIG, desc.digest, len(data))

    def put_layer(self, desc: Descriptor, diff_id: str, opener: Opener) -> Descriptor:
        if not (self.root / blob_path(desc.digest)).is_file():
            with opener() as stream:
                size = self._put(desc.digest, stream)
            if size != desc.size:
                raise digests.DigestMismatch(f"blob {desc.digest}: expected {desc.size} bytes, "
                                             f"got {size}", desc.digest)
        return desc

    def put_image(self, image: SourceImage, config: Descriptor, layers: list[Descriptor],
                  names: tuple[str, ...]) -> str:
        if image.manifest_bytes is not None and list(image.manifest.layers) == layers \
                and image.manifest.config.digest == config.digest:
            data = image.manifest_bytes
        else:
            data = Manifest(config, layers, annotations=image.manifest.annotations).to_bytes()
        digest = digests.of_bytes(data)
        self._put(digest, None, data)
        refs: list[str | None] = []
        if self.ref is not None:
            refs = [self.ref]
        elif self.ref_from_names and names:
            refs = list(names)
        else:
            refs = [None]
        for ref in refs:
            annotations = {REF_NAME: ref} if ref else None
            if ref and "/" in ref:
                annotations = {REF_NAME: ref, CONTAINERD_NAME: ref}
            self._entries.append(Descriptor(OCI_MANIFEST, digest, len(data),
                                            annotations=annotations))
        return config.digest

    def commit(self) -> None:
        index_path = self.root / "index.json"
        existing: list[dict] = []
        if index_path.is_file():
            try:
                existing = list(json.loads(index_path.read_bytes()).get("manifests") or [])
            except (ValueError, AttributeError):
                raise TransportError(f"{index_path}: not valid JSON") from None
        new_refs = {(d.annotations or {}).get(REF_NAME) for d in self._entries} - {None}
        kept = [e for e in existing
                if (e.get("annotations") or {}).get(REF_NAME) not in new_refs]
        new = [d.to_json() for d in self._entries]
        manifests = kept + [d for d in new if d not in kept]
        _fsync_write(self.root / LAYOUT_FILE,
                     canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
        _fsync_write(index_path, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                              "manifests": manifests}).encode())
        self.committed = True

    def close(self) -> None:
        if self.committed:
            return
        if self._created_root:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        for path in self._written:
            try:
                path.unlink()
            except FileNotFoundError:
                pass


class LayoutReference:
    transport = "oci"

    def __init__(self, path: str, ref: str | None = None) -> None:
        self.path = Path(path)
        self.ref = ref or None

    def open_source(self) -> LayoutSource:
        if not self.path.exists():
            raise ArchiveNotFound(f"{self.path}: no such directory")
        if not self.path.is_dir():
            raise TransportError(f"{self.path}: not a directory (an OCI layout is a directory; "
                                 "use oci-archive: for a tar)")
        return LayoutSource(DirFiles(self.path), self.ref)

    def open_destination(self) -> LayoutDestination:
        return LayoutDestination(self.path, self.ref)

    def __str__(self) -> str:
        return f"oci:{self.path}" + (f":{self.ref}" if self.ref else "")
