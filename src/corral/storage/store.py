"""The storage facade: content, layers, images and containers of one store root.

    <root>/content/                 corral.content.store.ContentStore
    <root>/storage/driver           the driver the store was made with
    <root>/storage/layers/ l/       the driver's layer directories (l/: overlay short links)
    <root>/storage/layers.json images.json containers.json
    <root>/storage/containers/<id>/ a container's RW layer, merged mount point, bundle
    <root>/storage/storage.lock     flock around every read-modify-write of the records
                                    (lookups read without it: files are replaced by rename)

Lock order: `storage.lock` first (one lock for all three record files, so a change
that touches layers and images together is atomic); per-layer staging locks are
only tried (LOCK_NB) while it is held; the content store's ingest locks are never
taken under it. Opening a store repairs what a crash left (see `repair`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corral.storage import reservations
from corral.storage.containers import ContainerRecord, ContainerStore
from corral.storage.drivers import Driver, make_driver, select_driver
from corral.storage.errors import DriverMismatch, ImageInUse
from corral.storage.images import ImageRecord, ImageStore
from corral.storage.layers import LayerRecord, LayerStore
from corral.storage.records import FileLock

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any, BinaryIO

DEFAULT_ROOT = Path("/var/lib/corral")
ROOT_ENV = "CORRAL_ROOT"
#: Blobs younger than this are kept by prune: a load may be writing its image.
BLOB_GRACE_SECONDS = 600.0


def default_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


class Store:
    """One store root; build it with `Store.open(root, driver=None)`."""

    def __init__(self, root: Path, driver: Driver, lock: FileLock, content: Any):
        self.root = root
        self.home = root / "storage"
        self.driver = driver
        self.lock = lock
        self.content = content
        self.layers = LayerStore(self.home, driver, lock)
        self.images = ImageStore(self.home, lock, self.layers)
        self.containers = ContainerStore(self.home, driver, lock, self.layers)
        self.repair_actions: list[str] = []

    @classmethod
    def open(cls, root: Path | str | None = None, driver: str | None = None, *,
             repair: bool = True) -> Store:
        """Open (creating if needed) the store at `root` (default $CORRAL_ROOT or
        /var/lib/corral). `driver` forces "overlay" or "vfs" (else $CORRAL_STORAGE_DRIVER,
        else the one the store was made with, else overlay when it works)."""
        from corral.content.store import ContentStore

        root = Path(root) if root is not None else default_root()
        home = root / "storage"
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o711)
        lock = FileLock(home / reservations.LOCK_NAME)
        with lock.held():
            recorded_file = home / "driver"
            recorded = recorded_file.read_text().strip() if recorded_file.exists() else None
            wanted = driver or os.environ.get("CORRAL_STORAGE_DRIVER") or None
            if recorded and wanted and wanted != recorded:
                raise DriverMismatch(f"store {root} was made with the {recorded} driver, "
                                     f"not {wanted} (remove it or use --storage-driver {recorded})")
            chosen = (make_driver(recorded, home, probe=False) if recorded
                      else select_driver(home, wanted))
            if not recorded:
                tmp = home / ".driver.tmp"
                tmp.write_text(chosen.name + "\n")
                os.replace(tmp, recorded_file)
            content = ContentStore(root / "content")
            store = cls(root, chosen, lock, content)
            if repair:
                store.repair_actions = store.repair()
        return store

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold storage.lock across several calls (they take it again reentrantly)."""
        with self.lock.held():
            yield

    # -- repair and GC ------------------------------------------------------------
    def repair(self) -> list[str]:
        """Crash repair: half-made/orphan layers and containers, mounts that are gone,
        users recomputed from images and containers (+ live holds), unused layers removed."""
        with self.lock.held():
            users, actions = self.containers.repair()
            for image in self.images.all():
                users[image.user] = image.top_layer
            actions += self.layers.repair(users)
        return actions

    def referenced_blobs(self) -> set[str]:
        """Digests that images in the store use: manifests, configs, layer blobs."""
        refs: set[str] = set()
        for image in self.images.all():
            refs.add(image.id)
            if image.manifest_digest:
                refs.add(image.manifest_digest)
                try:
                    manifest = json.loads(self.content.read_bytes(image.manifest_digest,
                                                                  max_size=4 << 20))
                except Exception:  # noqa: BLE001 - a missing/odd manifest references nothing
                    manifest = {}
                if isinstance(manifest, dict):
                    config = manifest.get("config") or {}
                    if isinstance(config, dict) and "digest" in config:
                        refs.add(config["digest"])
                    for layer in manifest.get("layers") or []:
                        if isinstance(layer, dict) and "digest" in layer:
                            refs.add(layer["digest"])
            for extra in image.metadata.get("blobs", []) or []:
                refs.add(extra)
        for layer in self.layers.all():
            if layer.compressed_digest:
                refs.add(layer.compressed_digest)
        return refs

    def prune(self, *, blob_grace: float = BLOB_GRACE_SECONDS) -> dict[str, list[str]]:
        """Remove layers nobody uses and blobs no image references (blobs younger than
        `blob_grace` seconds are kept: a concurrent load may be about to record them)."""
        with self.lock.held():
            layers = self.layers.prune()
            refs = self.referenced_blobs()
            blobs = []
            cutoff = time.time() - blob_grace
            for digest in list(self.content.walk()):
                if digest in refs:
                    continue
                try:
                    if self.content.path(digest).stat().st_mtime > cutoff:
                        continue
                except OSError:
                    continue
                self.content.delete(digest)
                blobs.append(digest)
        return {"layers": layers, "blobs": blobs}

    # -- layers ---------------------------------------------------------------------
    def put_layer(self, stream: BinaryIO, parent: str | None = None, *,
                  diff_id: str | None = None, compressed_digest: str | None = None,
                  compressed_size: int | None = None) -> LayerRecord:
        """Apply a layer tar on `parent` (shared if that chain id exists already). The
        layer is held by this process until an image or container uses it."""
        return self.layers.put(stream, parent, diff_id=diff_id,
                               compressed_digest=compressed_digest,
                               compressed_size=compressed_size)

    def layer(self, layer_id: str) -> LayerRecord:
        return self.layers.get(layer_id)

    def layer_diff(self, layer_id: str, out: BinaryIO) -> Any:
        return self.layers.diff(layer_id, out)

    # -- images -----------------------------------------------------------------------
    def create_image(self, image_id: str, top_layer: str | None, *,
                     names: tuple[str, ...] | list[str] = (), manifest_digest: str | None = None,
                     created: str | None = None, metadata: dict[str, Any] | None = None
                     ) -> ImageRecord:
        return self.images.create(image_id, top_layer, names=names,
                                  manifest_digest=manifest_digest, created=created,
                                  metadata=metadata)

    def image(self, ref: str) -> ImageRecord:
        """Read without storage.lock (see `container`)."""
        return self.images._find(self.images._load(), ref)

    def list_images(self) -> list[ImageRecord]:
        return self.images.all()

    def tag(self, ref: str, name: str) -> ImageRecord:
        return self.images.tag(ref, name)

    def untag(self, ref: str, name: str) -> ImageRecord:
        return self.images.untag(ref, name)

    def remove_image(self, ref: str, *, force: bool = False) -> tuple[ImageRecord, list[str]]:
        """Remove an image and the layers only it used. ImageInUse if containers use it
        (with `force`, those containers are removed first). Returns (record, removed layers)."""
        with self.lock.held():
            record = self.images.resolve(ref)
            users = [c for c in self.containers.all() if c.image == record.id]
            if users and not force:
                raise ImageInUse(f"image {record.short_id} ({record.id}) is used by containers "
                                 + ", ".join(c.id[:12] for c in users))
            for container in users:
                self.containers.remove(container.id)
            return self.images.remove(record.id)

    # -- containers -------------------------------------------------------------------
    def create_container(self, image: str | None, *, names: tuple[str, ...] | list[str] = (),
                         container_id: str | None = None,
                         metadata: dict[str, Any] | None = None,
                         reserved: bool = False) -> ContainerRecord:
        """A container with a fresh RW layer on the image `image` resolves to (None: scratch).
        `reserved`: its directory was made already (corral.storage.reservations)."""
        with self.lock.held():
            record = self.images.resolve(image) if image is not None else None
            return self.containers.create(record.top_layer if record else None,
                                          image=record.id if record else None, names=names,
                                          container_id=container_id, metadata=metadata,
                                          reserved=reserved)

    def container(self, ref: str) -> ContainerRecord:
        """Read without storage.lock: the record files are only ever replaced whole (a
        temp file renamed over them), so a lookup sees one version, as if it had run just
        before or after a change — and does not queue behind another container's mount,
        unmount or removal, which hold the lock (every engine verb looks its container
        up, often more than once)."""
        return self.containers._find(self.containers._load(), ref)

    def list_containers(self) -> list[ContainerRecord]:
        return self.containers.all()

    def mount(self, ref: str) -> Path:
        return self.containers.mount(ref)

    def unmount(self, ref: str, *, force: bool = False) -> bool:
        return self.containers.unmount(ref, force=force)

    def remove_container(self, ref: str) -> ContainerRecord:
        return self.containers.remove(ref)

    def diff(self, ref: str, out: BinaryIO) -> Any:
        return self.containers.diff(ref, out)

    def container_dir(self, ref: str) -> Path:
        return self.containers.path(self.container(ref).id)

    def mount_image(self, ref: str, target: Path) -> None:
        """Mount an image's filesystem read-only at `target` (the caller unmounts)."""
        from corral.storage.mount import mount_all

        record = self.images.resolve(ref)
        if record.top_layer is None:
            return
        mount_all(self.layers.mounts(record.top_layer), target)


__all__ = ["BLOB_GRACE_SECONDS", "DEFAULT_ROOT", "Store", "default_root"]
