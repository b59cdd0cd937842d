"""Image transports and the one copy routine (containers/image's model).

Every image location is a transport reference, written as podman writes them:

    docker-archive:PATH[:NAME[:TAG]]   a `docker save` / `podman save` tar
    oci-archive:PATH[:REF]             an OCI image layout in a tar
    oci:DIR[:REF]                      an OCI image layout directory (image-layout.md)
    containers-storage:[NAME]          the local store (corral.storage)
    tarball:PATH                       a root filesystem tar (source only: `import`)
    docker://HOST/REPO[:TAG|@DIGEST]   an image in a registry (corral.registry.client)

`parse(text, store=...)` turns such a string into a reference; `copy(sources,
destination)` copies the images of one or more sources into a destination:
config, then each layer blob (skipped when the destination has it), then the
image record/manifest, then one commit. Any error closes the destination
without a commit, which removes what the copy wrote.

A source that sets `parallel_blobs` (the registry) lets a destination that
has `set_parallel_blobs` (the store) fetch that many layers at once; one that
sets `resumable_blobs` has `open_blob(desc, offset=N)` (the rest of a blob),
and its layer openers say so (`opener.resumable`, `opener(offset=N)`). A
`progress` reporter (corral.registry.client.progress) hears of every blob:
started, bytes read, done — or skipped when the destination never opened it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Self

from corral.image.transports.types import (
    ArchiveNotFound,
    CopiedImage,
    ImageDestination,
    ImageNotInArchive,
    ImageReference,
    ImageSource,
    SourceImage,
    TransportError,
    UnknownFormat,
)

TRANSPORTS = ("docker-archive", "oci-archive", "oci", "containers-storage", "tarball", "docker")


def _split_path(rest: str) -> tuple[str, str | None]:
    """`PATH[:REF]`: the path ends at the first ':' (podman's rule for archives)."""
    path, sep, ref = rest.partition(":")
    return path, (ref if sep else None)


def parse(text: str, *, store: Any = None, tmpdir: str | None = None,
          registry: Any = None) -> ImageReference:
    """A transport reference from `transport:details` (see the module docstring).

    `registry` is the RegistryOptions a `docker://` reference uses."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        raise TransportError(f"invalid image location {text!r}: expected one of "
                             + ", ".join(f"{t}:" for t in TRANSPORTS))
    if transport == "docker":
        from corral.image.transports.registry import RegistryReference

        if not rest.startswith("//"):
            raise TransportError(f"invalid image location {text!r}: expected docker://NAME")
        return RegistryReference(rest[2:], registry)
    if transport == "containers-storage":
        if store is None:
            raise TransportError(f"{text}: no store given")
        from corral.image.transports.store import StoreReference

        return StoreReference(store, rest or None)
    path, ref = _split_path(rest)
    if not path:
        raise TransportError(f"invalid image location {text!r}: empty path")
    if transport == "docker-archive":
        from corral.image.transports.docker_archive import DockerArchiveReference

        return DockerArchiveReference(path, ref, tmpdir)
    if transport == "oci-archive":
        from corral.image.transports.oci_archive import ArchiveReference

        return ArchiveReference(path, ref, tmpdir)
    if transport == "oci":
        from corral.image.transports.oci_layout import LayoutReference

        return LayoutReference(path, ref)
    from corral.image.transports.tarball import TarballReference

    return TarballReference(rest, tmpdir=tmpdir)


def detect(path: str, *, tmpdir: str | None = None) -> ImageReference:
    """The reference for a file or directory of unknown format (`load -i`)."""
    from pathlib import Path

    from corral.image.transports._files import sniff_archive

    kind = sniff_archive(Path(path))
    return parse(f"{kind}:{path}", tmpdir=tmpdir)


def copy(sources: ImageReference | Sequence[ImageReference],
         destination: ImageReference, *, progress: Any = None) -> list[CopiedImage]:
    """Copy every image of `sources` into `destination`; one commit at the end."""
    if not isinstance(sources, Sequence):
        sources = [sources]
    copied: list[CopiedImage] = []
    opened: list[ImageSource] = []
    try:
        for ref in sources:
            opened.append(ref.open_source())
        dest = destination.open_destination()
        try:
            parallel = max((getattr(s, "parallel_blobs", 1) for s in opened), default=1)
            if parallel > 1 and hasattr(dest, "set_parallel_blobs"):
                dest.set_parallel_blobs(parallel)
            for source in opened:
                for image in source.images():
                    copied.append(copy_image(source, image, dest, progress))
            dest.commit()
        finally:
            dest.close()
    finally:
        for source in opened:
            source.close()
    return copied


def copy_image(source: ImageSource, image: SourceImage, dest: ImageDestination,
               progress: Any = None) -> CopiedImage:
    """Copy one image's blobs and record it in `dest` (no commit)."""
    if progress is None:
        from corral.registry.client.progress import Quiet

        progress = Quiet()
    opened: set[str] = set()
    for desc in image.manifest.layers:
        progress.start(desc, "blob")
    progress.start(image.manifest.config, "config")
    config = dest.put_config(image.manifest.config, image.config_bytes)
    layers = []
    resumable = bool(getattr(source, "resumable_blobs", False))
    for desc, diff_id in zip(image.manifest.layers, image.config.diff_ids):
        opener = functools.partial(_counted, source.open_blob, desc, progress, opened)
        opener.resumable = resumable  # type: ignore[attr-defined]
        layers.append(dest.put_layer(desc, diff_id, opener))
    image_id = dest.put_image(image, config, layers, image.names)
    for desc in image.manifest.layers:
        if desc.digest not in opened:
            opened.add(desc.digest)
            progress.done(desc.digest, "skipped")
    progress.done(image.manifest.config.digest, "done")
    progress.note("Writing manifest to image destination")
    return CopiedImage(image_id, image.names)


class _Counted:
    """A blob stream that reports its bytes, and "done" at its end."""

    def __init__(self, stream: Any, digest: str, progress: Any) -> None:
        self.stream = stream
        self.digest = digest
        self.progress = progress
        self.finished = False

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        if data:
            self.progress.advance(self.digest, len(data))
        elif not self.finished and n != 0:
            self.finished = True
            self.progress.done(self.digest, "done")
        return bytes(data)

    def close(self) -> None:
        self.stream.close()

    def abort(self) -> None:
        """Stop a transfer from another thread, when the stream can (a registry blob)."""
        abort = getattr(self.stream, "abort", None)
        if abort is not None:
            abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _counted(open_blob: Any, desc: Any, progress: Any, opened: set[str], offset: int = 0) -> Any:
    opened.add(desc.digest)
    if offset:      # a resumed fetch (the source has `resumable_blobs`)
        progress.advance(desc.digest, offset)
        return _Counted(open_blob(desc, offset=offset), desc.digest, progress)
    return _Counted(open_blob(desc), desc.digest, progress)


__all__ = [
    "TRANSPORTS", "ArchiveNotFound", "CopiedImage", "ImageDestination", "ImageNotInArchive",
    "ImageReference", "ImageSource", "SourceImage", "TransportError", "UnknownFormat", "copy",
    "copy_image", "detect", "parse",
]
