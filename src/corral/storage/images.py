"""The image store: image records (id = config digest), names, and their top layer.

`images.json` holds, per image: `id` (the config's digest, as docker and
containers/storage), `names` (normalized references such as
`docker.io/library/busybox:latest`), `manifest_digest`, `top_layer` (chain id of its
last layer, None for an image without layers), `created`, and free `metadata` for
the layers above (media types, the source transport...). An image is a user
(`image:<id>`) of every layer in its chain.
"""

from __future__ import annotations

from pathlib import Path

from corral.records_light import dataclass, field, replace
from corral.storage.errors import AmbiguousReference, ImageNotFound, InvalidArgument
from corral.storage.layers import LayerStore
from corral.storage.records import FileLock, digest_hex, now, read_json, write_json

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

MIN_PREFIX = 3


@dataclass(frozen=True)
class ImageRecord:
    id: str
    names: tuple[str, ...] = ()
    manifest_digest: str | None = None
    top_layer: str | None = None
    created: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return f"image:{self.id}"

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "names": list(self.names), "manifest_digest": self.manifest_digest,
                "top_layer": self.top_layer, "created": self.created, "metadata": self.metadata}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        return cls(id=data["id"], names=tuple(data.get("names", ())),
                   manifest_digest=data.get("manifest_digest"), top_layer=data.get("top_layer"),
                   created=data.get("created", ""), metadata=dict(data.get("metadata") or {}))


def _normalize(name: str) -> str | None:
    """docker's normalization (busybox -> docker.io/library/busybox:latest) when available."""
    try:
        from corral.oci.reference import Reference
    except ImportError:
        return None
    try:
        return str(Reference.parse(name))
    except Exception:  # noqa: BLE001 - not a reference: no normalized form
        return None


class ImageStore:
    def __init__(self, home: Path, lock: FileLock, layers: LayerStore):
        self.home = Path(home)
        self.lock = lock
        self.layers = layers
        self.file = self.home / "images.json"

    def _load(self) -> dict[str, ImageRecord]:
        data = read_json(self.file, {"images": []})
        return {item["id"]: ImageRecord.from_json(item) for item in data.get("images", [])}

    def _save(self, images: dict[str, ImageRecord]) -> None:
        write_json(self.file, {"images": [images[k].to_json() for k in sorted(images)]})

    def all(self) -> list[ImageRecord]:
        with self.lock.held():
            return sorted(self._load().values(), key=lambda r: r.created)

    # -- resolve --------------------------------------------------------------------
    @staticmethod
    def _find(images: dict[str, ImageRecord], ref: str) -> ImageRecord:
        if not ref:
            raise InvalidArgument("empty image reference")
        if ref in images:
            return images[ref]
        for record in images.values():
            if ref in record.names:
                return record
        normalized = _normalize(ref)
        if normalized and normalized != ref:
            for record in images.values():
                if normalized in record.names:
                    return record
        if "@" in ref:
            _repo, _, digest = ref.rpartition("@")
            for record in images.values():
                if record.manifest_digest == digest or record.id == digest:
                    return record
        candidate = ref.removeprefix("sha256:")
        if len(candidate) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in candidate):
            matches = [r for r in images.values() if r.id[7:].startswith(candidate)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise AmbiguousReference(
                    f"image id prefix {ref!r} matches {len(matches)} images: "
                    + ", ".join(r.short_id for r in matches))
        raise ImageNotFound(f"image {ref!r} not found")

    def resolve(self, ref: str) -> ImageRecord:
        """An image by name (as given or normalized), full id, `name@digest`, id or id prefix."""
        with self.lock.held():
            return self._find(self._load(), ref)

    def get(self, image_id: str) -> ImageRecord:
        with self.lock.held():
            images = self._load()
        if image_id not in images:
            raise ImageNotFound(f"image {image_id} not found")
        return images[image_id]

    # -- changes ----------------------------------------------------------------------
    def create(self, image_id: str, top_layer: str | None, *, names: tuple[str, ...] | list[str] = (),
               manifest_digest: str | None = None, created: str | None = None,
               metadata: dict[str, Any] | None = None) -> ImageRecord:
        """Add an image (or, when its id exists, add the names and update the record).

        The image becomes a user of its layer chain and this process's hold on the
        chain is released. A name given here is moved from any other image (a tag).
        """
        digest_hex(image_id, "image id")
        if manifest_digest is not None:
            digest_hex(manifest_digest, "manifest digest")
        with self.lock.held():
            images = self._load()
            record = images.get(image_id)
            if record is None:
                record = ImageRecord(id=image_id, top_layer=top_layer,
                                     manifest_digest=manifest_digest, created=created or now(),
                                     metadata=dict(metadata or {}))
            else:
                if record.top_layer != top_layer:
                    raise InvalidArgument(f"image {image_id} exists with top layer "
                                          f"{record.top_layer}, not {top_layer}")
                record = replace(record,
                                 manifest_digest=manifest_digest or record.manifest_digest,
                                 metadata={**record.metadata, **(metadata or {})})
            images[image_id] = record
            for name in names:
                self._tag(images, image_id, name)
            self.layers.add_user(top_layer, record.user)
            self.layers.release_hold(top_layer)
            self._save(images)
            return images[image_id]

    @staticmethod
    def _tag(images: dict[str, ImageRecord], image_id: str, name: str) -> None:
        if not name or any(c.isspace() for c in name):
            raise InvalidArgument(f"invalid image name {name!r}")
        for other_id, other in list(images.items()):
            if other_id != image_id and name in other.names:
                images[other_id] = replace(other, names=tuple(n for n in other.names if n != name))
        record = images[image_id]
        if name not in record.names:
            images[image_id] = replace(record, names=record.names + (name,))

    def tag(self, ref: str, name: str) -> ImageRecord:
        """Give the image `ref` resolves to the name `name` (taken from any other image)."""
        with self.lock.held():
            images = self._load()
            record = self._find(images, ref)
            self._tag(images, record.id, name)
            self._save(images)
            return images[record.id]

    def untag(self, ref: str, name: str) -> ImageRecord:
        with self.lock.held():
            images = self._load()
            record = self._find(images, ref)
            if name not in record.names:
                normalized = _normalize(name)
                if normalized in record.names:
                    name = normalized
                else:
                    raise ImageNotFound(f"image {record.short_id} has no name {name!r}")
            images[record.id] = replace(record, names=tuple(n for n in record.names if n != name))
            self._save(images)
            return images[record.id]

    def set_metadata(self, ref: str, **metadata: Any) -> ImageRecord:
        with self.lock.held():
            images = self._load()
            record = self._find(images, ref)
            images[record.id] = replace(record, metadata={**record.metadata, **metadata})
            self._save(images)
            return images[record.id]

    def remove(self, ref: str) -> tuple[ImageRecord, list[str]]:
        """Remove the image record and drop its layer references (unused layers go).
        The caller checks containers first (Store.remove_image does)."""
        with self.lock.held():
            images = self._load()
            record = self._find(images, ref)
            del images[record.id]
            self._save(images)
            removed = self.layers.drop_user(record.top_layer, record.user)
            return record, removed


__all__ = ["ImageRecord", "ImageStore"]
