"""What every transport implements: an image source, an image destination, a reference.

containers/image's model in Python: an `ImageReference` names an image location
in one transport (`oci:DIR:ref`, `docker-archive:PATH`, the local store...) and
opens an `ImageSource` (read side) or an `ImageDestination` (write side). The
one copy routine (`corral.image.transports.copy`) moves images between any two.

A source yields `SourceImage`s — the manifest in its OCI form (Docker schema 2
converted by `corral.oci.image.parse_manifest`), the original manifest bytes
when the source keeps them (so the digest survives a copy), and the config
bytes exactly as stored (their digest is the image id). Blobs are read with
`open_blob(descriptor)`.

A destination receives blobs (`put_config`, `put_layer`: it may store a layer
differently, e.g. docker-archive decompresses, and returns the descriptor it
stored), then `put_image` per image, then `commit()`; `close()` without a
commit throws away what the destination wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from corral.errors import InvalidArgument, NotFound
from corral.oci.image import Descriptor, ImageConfig, Manifest

#: Annotations of an OCI index entry naming the image (image-spec annotations.md, containerd).
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


class TransportError(InvalidArgument):
    """A transport reference or an archive is malformed; the message names it."""


class UnknownFormat(TransportError):
    """A file is neither a docker-archive nor an OCI archive/layout."""


class ArchiveNotFound(NotFound):
    """The file or directory a reference names does not exist."""


class ImageNotInArchive(NotFound):
    """The archive holds no image of the name asked for."""


@dataclass
class SourceImage:
    """One image as a source offers it."""

    manifest: Manifest
    config_bytes: bytes
    manifest_bytes: bytes | None = None  # OCI manifest bytes as stored (keeps its digest)
    names: tuple[str, ...] = ()  # normalized references (docker.io/library/busybox:latest)
    config: ImageConfig = field(init=False)

    def __post_init__(self) -> None:
        self.config = ImageConfig.from_bytes(self.config_bytes, "image config")
        layers = self.manifest.layers
        diff_ids = self.config.diff_ids
        if len(layers) != len(diff_ids):
            raise TransportError(f"image {self.config_digest}: the manifest has {len(layers)} "
                                 f"layers but the config lists {len(diff_ids)} diff ids")

    @property
    def config_digest(self) -> str:
        return self.manifest.config.digest


class ImageSource(Protocol):
    def images(self) -> list[SourceImage]:
        """The images to copy (the one a reference names, or all the source holds)."""

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """The bytes of a blob of one of the images (verified by whoever stores them)."""

    def close(self) -> None: ...


Opener = Callable[[], BinaryIO]


class ImageDestination(Protocol):
    def put_config(self, desc: Descriptor, data: bytes) -> Descriptor: ...

    def put_layer(self, desc: Descriptor, diff_id: str, opener: Opener) -> Descriptor:
        """Store a layer blob (opening it only if needed); the descriptor as stored."""

    def put_image(self, image: SourceImage, config: Descriptor, layers: list[Descriptor],
                  names: tuple[str, ...]) -> str:
        """Record an image whose blobs were put; returns its id (config digest)."""

    def commit(self) -> None: ...

    def close(self) -> None:
        """Release resources; without commit(), remove what this destination wrote."""


class ImageReference(Protocol):
    transport: str

    def open_source(self) -> ImageSource: ...

    def open_destination(self) -> ImageDestination: ...

    def __str__(self) -> str: ...


@dataclass(frozen=True)
class CopiedImage:
    id: str  # config digest
    names: tuple[str, ...]
    manifest_digest: str | None = None


class HashingReader:
    """Wraps a stream, hashing (sha256) and counting what is read through it."""

    def __init__(self, stream: BinaryIO, alg: str = "sha256") -> None:
        from corral.oci.digest import Hasher

        self._stream = stream
        self.hasher = Hasher(alg)

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.hasher.update(data)
        return data

    def digest(self) -> str:
        return self.hasher.digest()

    @property
    def size(self) -> int:
        return self.hasher.size

    def close(self) -> None:
        self._stream.close()
