"""`runtime.v1.ImageService` over the store: ListImages, ImageStatus, PullImage (the
registry client, auth from the request), RemoveImage, ImageFsInfo.

Names resolve as containerd's CRI does: a short name is docker.io/library/NAME:latest
(the store normalizes references the same way). An image the store lacks is not an
error for ImageStatus (an empty response, kubelet then pulls) nor for RemoveImage.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from corral.cri._gen import api_pb2 as pb
from corral.cri._gen import api_pb2_grpc as pb_grpc
from corral.cri.errors import grpc_errors
from corral.errors import InvalidArgument, NotFound


def _identity_authfile(directory: Path, ref: str, auth: Any) -> str:
    """An auth file (mode 0600) holding `auth.identity_token` for the image's registry
    (`auth.server_address` when given)."""
    from corral.oci.reference import parse

    registry = auth.server_address or parse(ref.removeprefix("docker://")).domain
    entry = {"identitytoken": auth.identity_token}
    if auth.username:
        entry["username"] = auth.username
    path = directory / "auth.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with open(fd, "w") as f:
        json.dump({"auths": {registry: entry}}, f)
    return str(path)


def _user(config: dict) -> tuple[int | None, str]:
    """ImageConfig.User → (uid, "") for a number, (None, name) for a name."""
    user = (config.get("config") or {}).get("User") or ""
    name = user.split(":", 1)[0]
    if not name:
        return None, ""
    if name.isdigit():
        return int(name), ""
    return None, name


class ImageService(pb_grpc.ImageServiceServicer):
    """The CRI image service of one store."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @property
    def store(self) -> Any:
        return self.engine.store

    def _config(self, record: Any) -> dict:
        return json.loads(self.store.content.read_bytes(record.id, max_size=16 << 20))

    def _image(self, record: Any) -> Any:
        config = self._config(record)
        uid, username = _user(config)
        size = sum(layer.size for layer in self.store.layers.chain(record.top_layer)) \
            if record.top_layer else 0
        digests = []
        if record.manifest_digest:
            for name in record.names:
                repo = name.rsplit("@", 1)[0]
                if ":" in repo.rsplit("/", 1)[-1]:
                    repo = repo.rsplit(":", 1)[0]
                digests.append(f"{repo}@{record.manifest_digest}")
        from corral.cri.pause import PAUSE_IMAGE

        image = pb.Image(id=record.id, repo_tags=list(record.names),
                         repo_digests=list(dict.fromkeys(digests)), size=size,
                         username=username, spec=pb.ImageSpec(image=record.id),
                         pinned=PAUSE_IMAGE in record.names)  # kubelet's GC keeps it
        if uid is not None:
            image.uid.value = uid
        return image

    @grpc_errors
    def ListImages(self, request: Any, context: Any) -> Any:
        """ListImagesRequest.filter.image: only that image (by any of its references)."""
        wanted = None
        if request.HasField("filter") and request.filter.image.image:
            try:
                wanted = self.store.image(request.filter.image.image).id
            except NotFound:
                return pb.ListImagesResponse()
        return pb.ListImagesResponse(images=[
            self._image(r) for r in self.store.list_images() if wanted in (None, r.id)])

    def StreamImages(self, request: Any, context: Any) -> Any:
        """StreamImagesRequest → ListImages' images, a page a message (CRIListStreaming)."""
        from corral.cri.runtime import filtered, pages

        images = self.ListImages(filtered(pb.ListImagesRequest, request), context).images
        yield from pages(images, lambda chunk: pb.StreamImagesResponse(images=chunk))

    @grpc_errors
    def ImageStatus(self, request: Any, context: Any) -> Any:
        """ImageStatusRequest → the Image, or an empty response when it is not present;
        with verbose, info["info"] is the image config JSON."""
        ref = request.image.image if request.HasField("image") else ""
        if not ref:
            raise InvalidArgument("ImageStatusRequest.image.image is required")
        try:
            record = self.store.image(ref)
        except NotFound:
            return pb.ImageStatusResponse()
        info = {}
        if request.verbose:
            info["info"] = json.dumps({"id": record.id, "names": list(record.names),
                                       "manifestDigest": record.manifest_digest,
                                       "imageSpec": self._config(record)})
        return pb.ImageStatusResponse(image=self._image(record), info=info)

    @grpc_errors
    def PullImage(self, request: Any, context: Any) -> Any:
        """PullImageRequest: image from its registry into the store, with the request's
        AuthConfig (username/password, `auth` base64 user:pass, or an `identity_token`:
        an OAuth2 refresh token the registry's token server exchanges); → image_ref
        (the id)."""
        ref = request.image.image if request.HasField("image") else ""
        if not ref:
            raise InvalidArgument("PullImageRequest.image.image is required")
        from corral.image import transports
        from corral.registry.client.config import RegistryOptions

        opts = RegistryOptions()
        tmpdir = self.engine.root / "tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        authdir = None
        if request.HasField("auth"):
            auth = request.auth
            if auth.registry_token:
                raise InvalidArgument("PullImageRequest.auth.registry_token is not supported "
                                      "yet (username/password, auth or identity_token)")
            if auth.auth:
                import base64

                try:
                    user, _, password = base64.b64decode(auth.auth).decode().partition(":")
                except ValueError as exc:
                    raise InvalidArgument(f"PullImageRequest.auth.auth: {exc}") from None
                opts.username, opts.password = user, password
            elif auth.username:
                opts.username, opts.password = auth.username, auth.password
            if auth.identity_token:
                # the registry client takes identity tokens from auth files only: a
                # private one for this pull (the request's credentials, nobody else's)
                authdir = Path(tempfile.mkdtemp(prefix="pull-auth-", dir=tmpdir))
                opts.authfile = _identity_authfile(authdir, ref, auth)
                opts.username = opts.password = None
        opts.blob_cache = str(self.engine.root / "cache" / "blob-locations.json")
        try:
            text = ref if ref.startswith("docker://") else f"docker://{ref}"
            source = transports.parse(text, registry=opts, tmpdir=str(tmpdir))
            dest = transports.parse("containers-storage:", store=self.store)
            copied = transports.copy(source, dest)
        finally:
            if authdir is not None:
                shutil.rmtree(authdir, ignore_errors=True)
        return pb.PullImageResponse(image_ref=copied[0].id)

    @grpc_errors
    def RemoveImage(self, request: Any, context: Any) -> Any:
        """RemoveImageRequest: the image and its tags removed; a missing image is no error."""
        ref = request.image.image if request.HasField("image") else ""
        if not ref:
            raise InvalidArgument("RemoveImageRequest.image.image is required")
        try:
            self.store.remove_image(ref)
        except NotFound:
            pass
        return pb.RemoveImageResponse()

    @grpc_errors
    def ImageFsInfo(self, request: Any, context: Any) -> Any:
        """ImageFsInfoResponse: the store's filesystem (its mountpoint, bytes and inodes
        used) for images and for containers (one store holds both)."""
        root = str(self.engine.root)
        st = os.statvfs(root)
        usage = pb.FilesystemUsage(
            timestamp=time.time_ns(), fs_id=pb.FilesystemIdentifier(mountpoint=root),
            used_bytes=pb.UInt64Value(value=(st.f_blocks - st.f_bfree) * st.f_frsize),
            inodes_used=pb.UInt64Value(value=st.f_files - st.f_ffree))
        return pb.ImageFsInfoResponse(image_filesystems=[usage],
                                      container_filesystems=[usage])
