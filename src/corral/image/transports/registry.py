"""The `docker://HOST/REPO[:TAG|@DIGEST]` transport: an image in a registry.

Names are normalized like docker's (`busybox` -> docker.io/library/busybox:latest).
Configuration (TLS, insecure registries, mirrors, credentials, progress) comes
in a `corral.registry.client.RegistryOptions`.

Source (pull): the manifest is fetched with OCI and Docker types in `Accept`
(an index or manifest list is resolved with `select_platform`, linux/amd64 by
default), tried at each mirror of registries.conf first, then at the registry.
Blobs are read through `BlobReader`s that resume broken transfers; the source
sets `parallel_blobs`, so a store destination fetches that many layers at once
and applies each while it downloads. Every blob is verified by the destination.

Destination (push): config and layers go up in parallel (`options.parallel`
at once): a blob the repository has (HEAD) is skipped; one that another
repository of the same registry is known to have (the blob-location cache,
`options.blob_cache`, filled by pulls and pushes) is mounted; the rest is
uploaded, in chunks when larger than `options.chunk_size`. The manifest goes
last, by tag (or by digest when the reference has one).
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from corral.image.transports.types import Opener, SourceImage, TransportError
from corral.oci.image import (
    CONFIG_TYPES,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    parse_manifest,
    select_platform,
)
from corral.registry.client.config import Endpoint, RegistryOptions


class BlobLocations:
    """digest -> ["host/repo", ...]: where blobs were seen (for cross-repository mounts)."""

    LIMIT = 20000

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.lock = threading.Lock()
        self.data: dict[str, list[str]] | None = None

    def _load(self) -> dict[str, list[str]]:
        if self.data is None:
            self.data = {}
            if self.path is not None:
                try:
                    loaded = json.loads(self.path.read_bytes())
                    if isinstance(loaded, dict):
                        self.data = {k: list(v) for k, v in loaded.items() if isinstance(v, list)}
                except (OSError, ValueError):
                    pass
        return self.data

    def known(self, digest: str) -> list[str]:
        with self.lock:
            return list(self._load().get(digest, ()))

    def add(self, digests: list[str], location: str) -> None:
        if self.path is None:
            return
        with self.lock:
            data = self._load()
            for d in digests:
                places = data.setdefault(d, [])
                if location in places:
                    places.remove(location)
                places.insert(0, location)
                del places[8:]
            if len(data) > self.LIMIT:
                for k in list(data)[:len(data) - self.LIMIT]:
                    del data[k]
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(data))
                os.replace(tmp, self.path)
            except OSError:
                pass


class _Registries:
    """One `Registry` per host for a transport reference (closed together)."""

    def __init__(self, options: RegistryOptions) -> None:
        self.options = options
        self.open: dict[str, Any] = {}

    def get(self, endpoint: Endpoint) -> Any:
        from corral.registry.client.client import Registry

        if endpoint.host not in self.open:
            self.open[endpoint.host] = Registry(endpoint.host, self.options,
                                                insecure=endpoint.insecure)
        return self.open[endpoint.host]

    def close(self) -> None:
        for r in self.open.values():
            r.close()
        self.open.clear()


class RegistrySource:
    def __init__(self, ref: RegistryReference) -> None:
        self.ref = ref
        self.options = ref.options
        self.parallel_blobs = max(1, ref.options.parallel)
        self.resumable_blobs = True
        self._images: list[SourceImage] | None = None
        self.registries = _Registries(ref.options)
        self.endpoint: Endpoint | None = None
        self.locations = BlobLocations(ref.options.blob_cache)

    @property
    def what(self) -> str:
        return f"pulling {self.ref.reference}"

    def _tag_or_digest(self) -> str:
        r = self.ref.reference
        return r.digest or r.tag or "latest"

    def images(self) -> list[SourceImage]:
        """The image the reference names (resolved once: the manifest, then its config)."""
        if self._images is None:
            self._images = self._resolve()
        return self._images

    def _resolve(self) -> list[SourceImage]:
        from corral.registry.client.errors import RegistryError

        r = self.ref.reference
        endpoints = self.options.endpoints(r.domain, r.path, pull=True)
        last: Exception | None = None
        for endpoint in endpoints:
            try:
                image = self._image_at(endpoint)
            except RegistryError as exc:
                if not endpoint.mirror:
                    raise
                last = exc
                continue
            self.endpoint = endpoint
            return [image]
        raise last or TransportError(f"{self.what}: no registry to pull from")

    def _image_at(self, endpoint: Endpoint) -> SourceImage:
        registry = self.registries.get(endpoint)
        repo = endpoint.repository
        data, media_type, digest = registry.get_manifest(repo, self._tag_or_digest(), self.what)
        parsed = parse_manifest(data, media_type or None)
        depth = 0
        while isinstance(parsed, Index):
            depth += 1
            if depth > 4:
                raise TransportError(f"{self.what}: indexes nested too deep")
            os_, arch, variant = self.options.platform
            chosen = select_platform(parsed, os_, arch, variant)
            data, media_type, digest = registry.get_manifest(repo, chosen.digest, self.what)
            parsed = parse_manifest(data, chosen.media_type)
        manifest = parsed
        if manifest.config.media_type not in CONFIG_TYPES:
            raise TransportError(f"{self.what}: manifest {digest} is not a container image "
                                 f"(config type {manifest.config.media_type})")
        config = registry.get_blob_bytes(repo, manifest.config.digest, manifest.config.size,
                                         self.what)
        self.locations.add([manifest.config.digest] + [d.digest for d in manifest.layers],
                           f"{endpoint.host}/{repo}")
        keep = data if not manifest.converted else None
        return SourceImage(manifest, config, keep, (self.ref.store_name(),))

    def open_blob(self, desc: Descriptor, offset: int = 0) -> BinaryIO:
        """The blob's bytes from `offset` on (a Range request resumes a partial download)."""
        assert self.endpoint is not None, "images() first"
        registry = self.registries.get(self.endpoint)
        return registry.open_blob(self.endpoint.repository, desc.digest, desc.size,  # type: ignore[return-value]
                                  self.what, offset=offset)

    def close(self) -> None:
        self.registries.close()


class RegistryDestination:
    def __init__(self, ref: RegistryReference) -> None:
        self.ref = ref
        self.options = ref.options
        r = ref.reference
        self.endpoint = ref.options.endpoints(r.domain, r.path, pull=False)[-1]
        self.registries = _Registries(ref.options)
        self.registry = self.registries.get(self.endpoint)
        self.repo = self.endpoint.repository
        self.pool = ThreadPoolExecutor(max(1, ref.options.parallel),
                                       thread_name_prefix="corral-push")
        self.pending: dict[str, Future[Any]] = {}
        self.locations = BlobLocations(ref.options.blob_cache)
        self.pushed_digest: str | None = None

    @property
    def what(self) -> str:
        return f"pushing {self.ref.reference}"

    def _put_blob(self, desc: Descriptor, opener: Opener) -> str:
        """Skip, mount or upload one blob; returns what happened."""
        reg = self.registry
        if reg.head_blob(self.repo, desc.digest, self.what):
            return "exists"
        here = f"{self.endpoint.host}/"
        location = None
        for place in self.locations.known(desc.digest):
            if not place.startswith(here) or place == here + self.repo:
                continue
            try:
                location = reg.mount_blob(self.repo, desc.digest, place[len(here):], self.what)
            except Exception:  # noqa: BLE001 - a refused mount falls back to an upload
                location = None
                continue
            if location is None:
                return "mounted"
            break
        reg.upload_blob(self.repo, desc.digest, desc.size, opener, self.what, location)
        return "uploaded"

    def _submit(self, desc: Descriptor, opener: Opener) -> None:
        if desc.digest not in self.pending:
            self.pending[desc.digest] = self.pool.submit(self._put_blob, desc, opener)

    def put_config(self, desc: Descriptor, data: bytes) -> Descriptor:
        import io

        self._submit(desc, lambda: io.BytesIO(data))
        return desc

    def put_layer(self, desc: Descriptor, diff_id: str, opener: Opener) -> Descriptor:
        self._submit(desc, opener)
        return desc

    def put_image(self, image: SourceImage, config: Descriptor, layers: list[Descriptor],
                  names: tuple[str, ...]) -> str:
        for future in self.pending.values():
            future.result()
        if image.manifest_bytes is not None and list(image.manifest.layers) == layers \
                and image.manifest.config == config:
            data = image.manifest_bytes
        else:
            data = Manifest(config, layers, annotations=image.manifest.annotations).to_bytes()
        r = self.ref.reference
        self.pushed_digest = self.registry.put_manifest(self.repo, r.digest or r.tag or "latest",
                                                        data, OCI_MANIFEST, self.what)
        self.ref.pushed_digest = self.pushed_digest
        self.locations.add(list(self.pending), f"{self.endpoint.host}/{self.repo}")
        return config.digest

    def commit(self) -> None:
        pass

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.registries.close()


class RegistryReference:
    transport = "docker"

    def __init__(self, text: str, options: RegistryOptions | None = None) -> None:
        from corral.oci.reference import InvalidReference, Reference

        text = text.removeprefix("//")
        try:
            self.reference = Reference.parse(text)
        except InvalidReference as exc:
            raise TransportError(f"invalid registry reference {text!r}: {exc}") from None
        self.options = options or RegistryOptions()
        self.pushed_digest: str | None = None   # set by a push: the manifest's digest

    def store_name(self) -> str:
        return str(self.reference)

    def open_source(self) -> RegistrySource:
        return RegistrySource(self)

    def open_destination(self) -> RegistryDestination:
        return RegistryDestination(self)

    def __str__(self) -> str:
        return "docker://" + str(self.reference)
