"""The layer store: copy-on-write layers identified by chain id, shared and refcounted.

A layer's identity is its chain id (image-spec config.md#layer-chainid): the diff id
of a base layer, `sha256(parent-chain-id + " " + diff-id)` above it; so the same
layer tar applied on the same parent is stored once, whoever asks. Records live in
`<home>/layers.json`; each lists its users: `image:<id>`, `container:<id>`, or a
live process's hold (see corral.storage.holds). A layer whose users are gone is
removed (its parents after it, when they are unused too).

A layer is applied into a staging directory `layers/tmp-<random>` that its writer
keeps flock()ed, then renamed to `layers/<chain-id-hex>` and recorded, both under
`storage.lock`; a layer directory is therefore either recorded and complete or
crash debris, which `repair()` removes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from corral.records_light import dataclass, field, replace
from corral.storage import holds
from corral.storage.drivers import Driver
from corral.storage.errors import LayerInUse, LayerMismatch, LayerNotFound
from corral.storage.mount import Mount
from corral.storage.records import (
    FileLock,
    digest_hex,
    now,
    read_json,
    try_lock_dir,
    write_json,
)

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any, BinaryIO

STAGING_PREFIX = "tmp-"


def chain_id(parent: str | None, diff_id: str) -> str:
    """image-spec config.md#layer-chainid."""
    digest_hex(diff_id, "diff id")
    if parent is None:
        return diff_id
    import hashlib  # here: opening a store for `run` needs no digests

    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


@dataclass(frozen=True)
class LayerRecord:
    id: str                       # chain id, sha256:<hex>
    diff_id: str
    parent: str | None
    size: int                     # bytes of the uncompressed layer tar
    compressed_digest: str | None = None
    compressed_size: int | None = None
    created: str = ""
    users: tuple[str, ...] = field(default_factory=tuple)

    @property
    def hex(self) -> str:
        return self.id.split(":", 1)[1]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "diff_id": self.diff_id, "parent": self.parent,
                "size": self.size, "compressed_digest": self.compressed_digest,
                "compressed_size": self.compressed_size, "created": self.created,
                "users": sorted(self.users)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerRecord:
        return cls(id=data["id"], diff_id=data["diff_id"], parent=data.get("parent"),
                   size=int(data.get("size") or 0),
                   compressed_digest=data.get("compressed_digest"),
                   compressed_size=data.get("compressed_size"),
                   created=data.get("created", ""), users=tuple(data.get("users", ())))


class LayerStore:
    """Layers by chain id; see the module docstring. Every method takes `lock` itself."""

    def __init__(self, home: Path, driver: Driver, lock: FileLock):
        self.home = Path(home)
        self.driver = driver
        self.lock = lock
        self.file = self.home / "layers.json"
        self.dir = self.home / "layers"
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- records ----------------------------------------------------------------
    def _load(self) -> dict[str, LayerRecord]:
        data = read_json(self.file, {"layers": []})
        return {item["id"]: LayerRecord.from_json(item) for item in data.get("layers", [])}

    def _save(self, layers: dict[str, LayerRecord], *, durable: bool = True) -> None:
        """`durable=False` for changes `repair()` recomputes after a crash (users)."""
        write_json(self.file, {"layers": [layers[k].to_json() for k in sorted(layers)]},
                   durable=durable)

    def all(self) -> list[LayerRecord]:
        with self.lock.held():
            return sorted(self._load().values(), key=lambda r: r.created)

    def get(self, layer_id: str) -> LayerRecord:
        with self.lock.held():
            layers = self._load()
        try:
            return layers[layer_id]
        except KeyError:
            raise LayerNotFound(f"layer {layer_id} not found in {self.home}") from None

    def exists(self, layer_id: str) -> bool:
        with self.lock.held():
            return layer_id in self._load()

    @staticmethod
    def _chain(layers: dict[str, LayerRecord], top: str | None) -> list[str]:
        """`top` and its parents, top first."""
        chain: list[str] = []
        while top is not None:
            record = layers.get(top)
            if record is None:
                raise LayerNotFound(f"layer {top} not found (in the chain of {chain[:1] or top})")
            chain.append(top)
            top = record.parent
        return chain

    def chain(self, top: str | None) -> list[LayerRecord]:
        """The layers from the base up to `top`."""
        with self.lock.held():
            layers = self._load()
            return [layers[i] for i in reversed(self._chain(layers, top))]

    # -- users --------------------------------------------------------------------
    def _add_user(self, layers: dict[str, LayerRecord], top: str | None, user: str) -> None:
        for layer_id in self._chain(layers, top):
            record = layers[layer_id]
            if user not in record.users:
                layers[layer_id] = replace(record, users=record.users + (user,))

    def _drop_user(self, layers: dict[str, LayerRecord], top: str | None, user: str) -> None:
        for layer_id in self._chain(layers, top):
            record = layers[layer_id]
            if user in record.users:
                layers[layer_id] = replace(record,
                                           users=tuple(u for u in record.users if u != user))

    def add_user(self, top: str | None, user: str) -> None:
        """Record `user` on `top` and every parent of it. Not fsynced: the users are
        recomputed by `repair()` from the image and container records, which are (the
        user is recorded before its image or container, whose fsync follows)."""
        with self.lock.held():
            layers = self._load()
            self._add_user(layers, top, user)
            self._save(layers, durable=False)

    def drop_user(self, top: str | None, user: str, *, remove_unused: bool = True
                  ) -> list[str]:
        """Drop `user` from the chain; remove layers left without users. Returns removed ids.
        Not fsynced unless a layer goes: a user that reappears after a crash is dropped by
        `repair()`, which recomputes the users from the images and containers."""
        with self.lock.held():
            layers = self._load()
            self._drop_user(layers, top, user)
            removed = self._remove_unused(layers, self._chain(layers, top)) \
                if remove_unused else []
            self._save(layers, durable=bool(removed))
            return removed

    def release_hold(self, top: str | None) -> None:
        """Drop this process's hold on the chain (the image or container now holds it)."""
        with self.lock.held():
            layers = self._load()
            self._drop_user(layers, top, holds.current())
            self._save(layers)

    def _children(self, layers: dict[str, LayerRecord], layer_id: str) -> list[str]:
        return [r.id for r in layers.values() if r.parent == layer_id]

    def _remove_unused(self, layers: dict[str, LayerRecord], candidates: Iterable[str]) -> list[str]:
        """Remove the candidates (top first) that have no users and no children."""
        removed = []
        for layer_id in candidates:
            record = layers.get(layer_id)
            if record is None or record.users or self._children(layers, layer_id):
                continue
            self.driver.remove(record.hex)
            del layers[layer_id]
            removed.append(layer_id)
        return removed

    # -- put / remove -------------------------------------------------------------
    def put(self, stream: BinaryIO, parent: str | None = None, *, diff_id: str | None = None,
            compressed_digest: str | None = None, compressed_size: int | None = None,
            user: str | None = None) -> LayerRecord:
        """Apply a layer tar on `parent`; the record of the (new or already stored) layer.

        With `diff_id` known (from an image config) an existing layer is shared without
        reading `stream`; otherwise the tar is applied and its diff id computed. A
        content that does not match `diff_id` raises LayerMismatch and leaves nothing.
        The chain is held by `user` (default: this process's hold).
        """
        user = user or holds.current()
        if diff_id is not None:
            digest_hex(diff_id, "diff id")
        with self.lock.held():
            layers = self._load()
            if parent is not None and parent not in layers:
                raise LayerNotFound(f"parent layer {parent} not found in {self.home}")
            if diff_id is not None:
                existing = chain_id(parent, diff_id)
                if existing in layers:
                    self._add_user(layers, existing, user)
                    self._save(layers)
                    return layers[existing]
            staging = STAGING_PREFIX + os.urandom(16).hex()
            (self.dir / staging).mkdir()
            lock_fd = try_lock_dir(self.dir / staging)
            assert lock_fd is not None
            self._add_user(layers, parent, user)  # keep the parent while we apply
            self._save(layers)
        try:
            try:
                parent_hex = layers[parent].hex if parent is not None else None
                self.driver.create(staging, parent_hex)
                applied = self.driver.apply(staging, stream)
                if diff_id is not None and applied.diff_id != diff_id:
                    raise LayerMismatch(f"layer on {parent or 'scratch'} has diff id "
                                        f"{applied.diff_id}, expected {diff_id}")
            except BaseException:
                with self.lock.held():
                    self.driver.remove(staging)
                raise
            layer_id = chain_id(parent, applied.diff_id)
            with self.lock.held():
                layers = self._load()
                if parent is not None and parent not in layers:  # cannot happen: we hold it
                    self.driver.remove(staging)
                    raise LayerNotFound(f"parent layer {parent} vanished while applying")
                if layer_id in layers:  # another process stored it meanwhile: share theirs
                    self.driver.remove(staging)
                else:
                    self.driver.rename(staging, layer_id.split(":", 1)[1])
                    layers[layer_id] = LayerRecord(
                        id=layer_id, diff_id=applied.diff_id, parent=parent, size=applied.size,
                        compressed_digest=compressed_digest, compressed_size=compressed_size,
                        created=now())
                self._add_user(layers, layer_id, user)
                self._save(layers)
                return layers[layer_id]
        finally:
            os.close(lock_fd)

    def set_compressed(self, layer_id: str, digest: str, size: int | None = None) -> None:
        """Remember the compressed blob a layer came from (or was saved as)."""
        with self.lock.held():
            layers = self._load()
            if layer_id not in layers:
                raise LayerNotFound(f"layer {layer_id} not found in {self.home}")
            layers[layer_id] = replace(layers[layer_id], compressed_digest=digest,
                                       compressed_size=size)
            self._save(layers)

    def remove(self, layer_id: str, *, force: bool = False) -> None:
        """Remove an unused layer (LayerInUse when it has users or children)."""
        with self.lock.held():
            layers = self._load()
            record = layers.get(layer_id)
            if record is None:
                raise LayerNotFound(f"layer {layer_id} not found in {self.home}")
            children = self._children(layers, layer_id)
            if children:
                raise LayerInUse(f"layer {layer_id} has child layers: {', '.join(children)}")
            if record.users and not force:
                raise LayerInUse(f"layer {layer_id} is used by {', '.join(record.users)}")
            self.driver.remove(record.hex)
            del layers[layer_id]
            self._save(layers)

    def prune(self) -> list[str]:
        """Remove every layer without users (top-most first)."""
        with self.lock.held():
            layers = self._load()
            removed: list[str] = []
            while True:
                batch = self._remove_unused(layers, list(layers))
                if not batch:
                    break
                removed += batch
            self._save(layers)
            return removed

    # -- reading layers -------------------------------------------------------------
    def mounts(self, layer_id: str) -> list[Mount]:
        """Read-only mounts showing the layer's whole filesystem."""
        record = self.get(layer_id)
        return self.driver.mounts(record.hex, None)

    def diff(self, layer_id: str, out: BinaryIO) -> Any:
        """Write the layer's own changes as an (uncompressed) OCI layer tar."""
        record = self.get(layer_id)
        return self.driver.diff(record.hex, None, out)

    # -- crash repair -------------------------------------------------------------
    def repair(self, live_users: dict[str, str | None]) -> list[str]:
        """Remove half-made and orphaned layer directories, drop records without
        directories, recompute users from `live_users` (user -> top layer, for images and
        containers) plus
        live holds, and remove layers left unused. Returns what was done."""
        actions: list[str] = []
        with self.lock.held():
            layers = self._load()
            original = dict(layers)
            by_hex = {r.hex: r.id for r in layers.values()}
            for entry in sorted(os.listdir(self.dir)):
                path = self.dir / entry
                if entry.startswith(STAGING_PREFIX):
                    fd = try_lock_dir(path) if path.is_dir() else None
                    if fd is None and path.is_dir():
                        continue  # being applied by a live process
                    try:
                        self.driver.remove(entry)
                    finally:
                        if fd is not None:
                            os.close(fd)
                    actions.append(f"removed half-made layer {path}")
                elif entry not in by_hex:
                    self.driver.remove(entry)
                    actions.append(f"removed unrecorded layer directory {path}")
            for layer_id in list(layers):
                if not self.driver.exists(layers[layer_id].hex):
                    del layers[layer_id]
                    actions.append(f"dropped record of layer {layer_id}: no directory")
            # drop records whose parent is gone (their content is unusable)
            changed = True
            while changed:
                changed = False
                for layer_id, record in list(layers.items()):
                    if record.parent is not None and record.parent not in layers:
                        self.driver.remove(record.hex)
                        del layers[layer_id]
                        actions.append(f"removed layer {layer_id}: parent {record.parent} gone")
                        changed = True
            for layer_id, record in list(layers.items()):
                kept = tuple(u for u in record.users
                             if (u in live_users) or (holds.is_hold(u) and holds.alive(u)))
                if kept != record.users:
                    layers[layer_id] = replace(record, users=kept)
            # recompute from live users: every user holds its whole chain
            for user, top in live_users.items():
                if top is not None and top in layers:
                    self._add_user(layers, top, user)
            removed = []
            while True:
                batch = self._remove_unused(layers, list(layers))
                if not batch:
                    break
                removed += batch
            actions += [f"removed unused layer {i}" for i in removed]
            prune_links = getattr(self.driver, "prune_links", None)
            if prune_links is not None:
                prune_links()
            if layers != original:  # this runs on every Store.open: no write, no fsync
                self._save(layers)
        return actions


__all__ = ["LayerRecord", "LayerStore", "chain_id"]
