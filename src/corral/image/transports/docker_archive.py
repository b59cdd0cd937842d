"""The `docker-archive:PATH[:NAME[:TAG]]` transport: `docker save` / `podman save` tars.

Format (docker's image/tarexport, containers/image docker/internal/tarfile):

```
manifest.json     [{"Config": "<hex>.json", "RepoTags": ["busybox:latest"],
                    "Layers": ["<id>/layer.tar", ...]}, ...]
<hex>.json        the image config (its sha256 is the image id)
<id>/layer.tar    each layer, an uncompressed tar (paths may also be <hex>.tar or
                  blobs/sha256/<hex> in newer writers; symlinks between members allowed)
repositories      legacy {"busybox": {"latest": "<id>"}}
```

Reading takes every path from manifest.json (so the legacy, podman and
docker-25 OCI-style layouts all load); the archive may be gzip/zstd-compressed
as a whole. An uncompressed layer's digest is its diff id (verified when it is
stored); a compressed layer member is hashed to describe it. `PATH:NAME` as a
source picks the image with that RepoTag (`PATH:@N`: the N-th).

Writing produces the legacy layout with `<diff-id-hex>/layer.tar` (+ `json`,
`VERSION`), `<config-hex>.json`, `manifest.json` and `repositories`, with
normalized names in RepoTags as podman writes them; compressed layers are
decompressed (the format's layers are plain tars). The tar is written to a
temporary file renamed onto PATH on commit.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from corral.image.transports._files import TarFiles, clean
from corral.image.transports.types import (
    ArchiveNotFound,
    ImageNotInArchive,
    Opener,
    SourceImage,
    TransportError,
)
from corral.oci import digest as digests
from corral.oci.image import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    Descriptor,
    ImageConfig,
    Manifest,
    layer_compression,
)
from corral.oci.reference import InvalidReference, Reference

_KIND_TO_TYPE = {"tar": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}


class DockerArchiveSource:
    def __init__(self, path: Path, name: str | None, tmpdir: str | None = None) -> None:
        self.files = TarFiles(path, tmpdir)
        self.name = name
        self._paths: dict[str, str] = {}  # digest -> member path

    def _entries(self) -> list[dict]:
        if not self.files.exists("manifest.json"):
            raise TransportError(f"{self.files.name}: not a docker-archive (no manifest.json)")
        try:
            entries = json.loads(self.files.read("manifest.json"))
        except ValueError:
            raise TransportError(f"{self.files.name}: manifest.json is not valid JSON") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise TransportError(f"{self.files.name}: manifest.json is not a list of images")
        return entries

    def _select(self, entries: list[dict]) -> list[dict]:
        if self.name is None:
            if not entries:
                raise ImageNotInArchive(f"{self.files.name}: manifest.json lists no image")
            return entries
        if self.name.startswith("@"):
            try:
                return [entries[int(self.name[1:])]]
            except (ValueError, IndexError):
                raise ImageNotInArchive(f"{self.files.name}: no image {self.name}") from None
        wanted = str(Reference.parse(self.name))
        for entry in entries:
            for tag in entry.get("RepoTags") or []:
                try:
                    if str(Reference.parse(tag)) == wanted:
                        return [entry]
                except InvalidReference:
                    continue
        raise ImageNotInArchive(f"{self.files.name}: no image named {self.name}")

    def images(self) -> list[SourceImage]:
        out = []
        for i, entry in enumerate(self._select(self._entries())):
            where = f"{self.files.name}: manifest.json[{i}]"
            config_path = clean(entry.get("Config") or "", f"{where}.Config")
            try:
                config_bytes = self.files.read(config_path)
            except ArchiveNotFound:
                raise TransportError(f"{where}: config {config_path} is missing") from None
            config = ImageConfig.from_bytes(config_bytes, f"{where} config")
            layer_paths = entry.get("Layers")
            if not isinstance(layer_paths, list):
                raise TransportError(f"{where}.Layers: expected a list of paths")
            diff_ids = config.diff_ids
            if len(layer_paths) != len(diff_ids):
                raise TransportError(f"{where}: {len(layer_paths)} layers, but the config "
                                     f"lists {len(diff_ids)} diff ids")
            layers = []
            for j, (raw, diff_id) in enumerate(zip(layer_paths, diff_ids)):
                path = clean(raw, f"{where}.Layers[{j}]")
                if not self.files.exists(path):
                    raise TransportError(f"{where}: layer {path} is missing")
                layers.append(self._describe(path, diff_id))
            config_desc = Descriptor(OCI_CONFIG, digests.of_bytes(config_bytes),
                                     len(config_bytes))
            self._paths[config_desc.digest] = config_path
            names = []
            for tag in entry.get("RepoTags") or []:
                try:
                    names.append(str(Reference.parse(tag)))
                except InvalidReference:
                    continue
            out.append(SourceImage(Manifest(config_desc, layers), config_bytes, None,
                                   tuple(names)))
        return out

    def _describe(self, path: str, diff_id: str) -> Descriptor:
        from corral.image.compression import sniff

        with self.files.open(path) as f:
            kind = sniff(f.read(4))
        size = self.files.size(path)
        if kind == "tar":
            digest = diff_id  # verified when stored
        else:
            hasher = digests.Hasher()
            with self.files.open(path) as f:
                while chunk := f.read(1 << 20):
                    hasher.update(chunk)
            digest = hasher.digest()
        self._paths[digest] = path
        return Descriptor(_KIND_TO_TYPE[kind], digest, size)

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        path = self._paths.get(desc.digest)
        if path is None:
            raise TransportError(f"{self.files.name}: no blob {desc.digest}")
        return self.files.open(path)

    def close(self) -> None:
        self.files.close()


class DockerArchiveDestination:
    def __init__(self, path: Path, name: str | None) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ArchiveNotFound(f"{self.path}: directory {self.path.parent} does not exist")
        if self.path.is_dir():
            raise TransportError(f"{self.path}: is a directory")
        self.names_override = (str(Reference.parse(name)),) if name else None
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.tar = tarfile.open(self.tmp, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.entries: list[dict] = []
        self.repositories: dict[str, dict[str, str]] = {}
        self.written: set[str] = set()
        self.sizes: dict[str, int] = {}
        self.committed = False

    def _add_bytes(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def put_config(self, desc: Descriptor, data: bytes) -> Descriptor:
        name = f"{digests.encoded(desc.digest)}.json"
        if name not in self.written:
            self._add_bytes(name, data)
            self.written.add(name)
        return Descriptor(OCI_CONFIG, desc.digest, len(data))

    def put_layer(self, desc: Descriptor, diff_id: str, opener: Opener) -> Descriptor:
        hex_ = digests.encoded(diff_id)
        name = f"{hex_}/layer.tar"
        if name in self.sizes:
            return Descriptor(OCI_LAYER, diff_id, self.sizes[name])
        compressed = layer_compression(desc.media_type) is not None
        with opener() as stream:
            if compressed:
                from corral.image.compression import open_layer

                with tempfile.TemporaryFile(dir=self.path.parent) as plain:
                    with open_layer(stream) as raw:
                        shutil.copyfileobj(raw, plain, 1 << 20)
                    size = plain.tell()
                    plain.seek(0)
                    actual = self._add_layer(name, plain, size)
            else:
                size = desc.size
                actual = self._add_layer(name, stream, size)
        if actual != diff_id:
            raise digests.DigestMismatch(f"layer {desc.digest}: uncompressed digest {actual} "
                                         f"does not match diff id {diff_id}", diff_id, actual)
        self._add_bytes(f"{hex_}/VERSION", b"1.0")
        self._add_bytes(f"{hex_}/json", json.dumps({"id": hex_}).encode())
        self.sizes[name] = size
        return Descriptor(OCI_LAYER, diff_id, size)

    def _add_layer(self, name: str, stream: BinaryIO, size: int) -> str:
        from corral.image.transports.types import HashingReader

        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        reader = HashingReader(stream)
        self.tar.addfile(info, reader)  # type: ignore[arg-type]
        return reader.digest()

    def put_image(self, image: SourceImage, config: Descriptor, layers: list[Descriptor],
                  names: tuple[str, ...]) -> str:
        names = self.names_override or names
        tags = list(names)
        self.entries.append({"Config": f"{digests.encoded(config.digest)}.json",
                             "RepoTags": tags,
                             "Layers": [f"{digests.encoded(d.digest)}/layer.tar"
                                        for d in layers]})
        if layers:
            top = digests.encoded(layers[-1].digest)
            for name in names:
                ref = Reference.parse(name)
                if ref.tag:
                    self.repositories.setdefault(ref.name, {})[ref.tag] = top
        return config.digest

    def commit(self) -> None:
        self._add_bytes("manifest.json", json.dumps(self.entries).encode())
        if self.repositories:
            self._add_bytes("repositories", json.dumps(self.repositories).encode())
        self.tar.close()
        with open(self.tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        self.committed = True

    def close(self) -> None:
        if not self.committed:
            self.tar.close()
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass


class DockerArchiveReference:
    transport = "docker-archive"

    def __init__(self, path: str, name: str | None = None, tmpdir: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or None
        self.tmpdir = tmpdir
        if self.name and not self.name.startswith("@"):
            Reference.parse(self.name)  # InvalidReference now, not half-way through a copy

    def open_source(self) -> DockerArchiveSource:
        return DockerArchiveSource(self.path, self.name, self.tmpdir)

    def open_destination(self) -> DockerArchiveDestination:
        return DockerArchiveDestination(self.path, self.name)

    def __str__(self) -> str:
        return f"docker-archive:{self.path}" + (f":{self.name}" if self.name else "")
