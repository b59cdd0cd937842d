"""Image transports and the one copy routine (containers/image's model).

Every image location is a transport reference, written as podman writes them:

    docker-archive:PATH[:NAME[:TAG]]   a `docker save` / `podman save` tar
    oci-archive:PATH[:REF]             an OCI image layout in a tar
    oci:DIR[:REF]                      an OCI image layout directory (image-layout.md)
    containers-storage:[NAME]          the local store (corral.storage)
    tarball:PATH                       a root filesystem tar (source only: `import`)

`parse(text, store=...)` turns such a string into a reference; `copy(sources,
destination)` copies the images of one or more sources into a destination:
config, then each layer blob (skipped when the destination has it), then the
image record/manifest, then one commit. Any error closes the destination
without a commit, which removes what the copy wrote.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

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

TRANSPORTS = ("docker-archive", "oci-archive", "oci", "containers-storage", "tarball")


def _split_path(rest: str) -> tuple[str, str | None]:
    """`PATH[:REF]`: the path ends at the first ':' (podman's rule for archives)."""
    path, sep, ref = rest.partition(":")
    return path, (ref if sep else None)


def parse(text: str, *, store: Any = None, tmpdir: str | None = None) -> ImageReference:
    """A transport reference from `transport:details` (see the module docstring)."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        raise TransportError(f"invalid image location {text!r}: expected one of "
                             + ", ".join(f"{t}:" for t in TRANSPORTS))
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
         destination: ImageReference) -> list[CopiedImage]:
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
            for source in opened:
                for image in source.images():
                    copied.append(copy_image(source, image, dest))
            dest.commit()
        finally:
            dest.close()
    finally:
        for source in opened:
            source.close()
    return copied


def copy_image(source: ImageSource, image: SourceImage, dest: ImageDestination) -> CopiedImage:
    """Copy one image's blobs and record it in `dest` (no commit)."""
    config = dest.put_config(image.manifest.config, image.config_bytes)
    layers = []
    for desc, diff_id in zip(image.manifest.layers, image.config.diff_ids):
        layers.append(dest.put_layer(desc, diff_id, functools.partial(source.open_blob, desc)))
    image_id = dest.put_image(image, config, layers, image.names)
    return CopiedImage(image_id, image.names)


__all__ = [
    "TRANSPORTS", "ArchiveNotFound", "CopiedImage", "ImageDestination", "ImageNotInArchive",
    "ImageReference", "ImageSource", "SourceImage", "TransportError", "UnknownFormat", "copy",
    "copy_image", "detect", "parse",
]
