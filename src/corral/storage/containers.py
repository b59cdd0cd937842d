"""The container store: a read-write layer on an image's top layer, plus metadata.

`containers.json` holds, per container: `id` (64 hex), `names`, `image` (image id or
None), `layer` (the chain id it sits on), `created`, `metadata`, and `mounts`, the
number of outstanding `mount()` calls. `containers/<id>/rw` is the driver's
read-write layer, `containers/<id>/merged` the rootfs mount point; the rest of
`containers/<id>/` belongs to the engine (its runtime bundle). A container is a user
(`container:<id>`) of every layer under it.
"""

from __future__ import annotations

import os
from pathlib import Path

from corral.records_light import dataclass, field, replace
from corral.storage import reservations
from corral.storage.drivers import Driver
from corral.storage.drivers._util import remove_tree
from corral.storage.errors import (
    AmbiguousReference,
    ContainerExists,
    ContainerMounted,
    ContainerNotFound,
    InvalidArgument,
)
from corral.storage.layers import LayerStore
from corral.storage.mount import is_mountpoint, mount_all, mountpoints, unmount_all_under
from corral.storage.records import FileLock, check_hex_id, now, read_json, write_json

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any, BinaryIO

MIN_PREFIX = 3


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    names: tuple[str, ...] = ()
    image: str | None = None
    layer: str | None = None
    created: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    mounts: int = 0

    @property
    def user(self) -> str:
        return f"container:{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "names": list(self.names), "image": self.image,
                "layer": self.layer, "created": self.created, "metadata": self.metadata,
                "mounts": self.mounts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerRecord:
        return cls(id=data["id"], names=tuple(data.get("names", ())), image=data.get("image"),
                   layer=data.get("layer"), created=data.get("created", ""),
                   metadata=dict(data.get("metadata") or {}), mounts=int(data.get("mounts", 0)))


class ContainerStore:
    def __init__(self, home: Path, driver: Driver, lock: FileLock, layers: LayerStore):
        self.home = Path(home)
        self.driver = driver
        self.lock = lock
        self.layers = layers
        self.file = self.home / "containers.json"
        self.dir = self.home / "containers"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _load(self) -> dict[str, ContainerRecord]:
        data = read_json(self.file, {"containers": []})
        return {item["id"]: ContainerRecord.from_json(item)
                for item in data.get("containers", [])}

    def _save(self, containers: dict[str, ContainerRecord], *, durable: bool = True) -> None:
        """`durable=False` for what a crash makes moot or `repair()` fixes: mount counts
        (mounts do not survive a reboot), a removal whose directory is gone."""
        write_json(self.file, {"containers": [containers[k].to_json() for k in sorted(containers)]},
                   durable=durable)

    def path(self, container_id: str) -> Path:
        """`containers/<id>/`: the engine may keep the bundle here."""
        return self.dir / check_hex_id(container_id, "container id")

    def rw_dir(self, container_id: str) -> Path:
        return self.path(container_id) / "rw"

    def merged(self, container_id: str) -> Path:
        return self.path(container_id) / "merged"

    def all(self) -> list[ContainerRecord]:
        with self.lock.held():
            return sorted(self._load().values(), key=lambda r: r.created)

    @staticmethod
    def _find(containers: dict[str, ContainerRecord], ref: str) -> ContainerRecord:
        if ref in containers:
            return containers[ref]
        for record in containers.values():
            if ref in record.names:
                return record
        if len(ref) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in ref):
            matches = [r for r in containers.values() if r.id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise AmbiguousReference(f"container id prefix {ref!r} matches "
                                         f"{len(matches)} containers")
        raise ContainerNotFound(f"container {ref!r} not found")

    def get(self, ref: str) -> ContainerRecord:
        """A container by id, name, or unique id prefix."""
        with self.lock.held():
            return self._find(self._load(), ref)

    def create(self, layer: str | None, *, image: str | None = None,
               names: tuple[str, ...] | list[str] = (), container_id: str | None = None,
               metadata: dict[str, Any] | None = None, reserved: bool = False
               ) -> ContainerRecord:
        """`reserved`: the directory exists already, reserved by this process
        (corral.storage.reservations); it is adopted, and left as it is on failure (its
        reserver removes it)."""
        container_id = container_id or os.urandom(32).hex()
        check_hex_id(container_id, "container id")
        with self.lock.held():
            containers = self._load()
            if container_id in containers:
                raise ContainerExists(f"container {container_id} exists already")
            for name in names:
                if not name or "/" in name:
                    raise InvalidArgument(f"invalid container name {name!r}")
                for other in containers.values():
                    if name in other.names:
                        raise ContainerExists(f"container name {name!r} is in use by {other.id}")
            record = ContainerRecord(id=container_id, names=tuple(names), image=image,
                                     layer=layer, created=now(), metadata=dict(metadata or {}))
            self.layers.add_user(layer, record.user)  # raises LayerNotFound first
            path = self.path(container_id)
            try:
                if not reserved:
                    path.mkdir()
                elif reservations.holder(path) != os.getpid():
                    raise InvalidArgument(f"{path}: not reserved by this process")
                (path / "merged").mkdir()
                layer_hex = self.layers.get(layer).hex if layer is not None else None
                self.driver.create_rw(self.rw_dir(container_id), layer_hex)
            except BaseException:
                if not reserved:
                    remove_tree(path)
                self.layers.drop_user(layer, record.user)
                raise
            containers[container_id] = record
            self._save(containers)
            if reserved:
                reservations.release(path)
            return record

    def set_metadata(self, ref: str, *, durable: bool = True, **metadata: Any
                     ) -> ContainerRecord:
        """Merge `metadata` into the record's; `durable=False` for copies of what is kept
        durably elsewhere (the engine's bundle holds the command too)."""
        with self.lock.held():
            containers = self._load()
            record = self._find(containers, ref)
            containers[record.id] = replace(record, metadata={**record.metadata, **metadata})
            self._save(containers, durable=durable)
            return containers[record.id]

    def rename(self, ref: str, name: str) -> ContainerRecord:
        """Give the container `name` as its only name (unique: ContainerExists otherwise)."""
        if not name or "/" in name:
            raise InvalidArgument(f"invalid container name {name!r}")
        with self.lock.held():
            containers = self._load()
            record = self._find(containers, ref)
            for other in containers.values():
                if other.id != record.id and name in other.names:
                    raise ContainerExists(f"container name {name!r} is in use by {other.id}")
            containers[record.id] = replace(record, names=(name,))
            self._save(containers)
            return containers[record.id]

    def _mounts(self, record: ContainerRecord) -> list:
        layer_hex = self.layers.get(record.layer).hex if record.layer is not None else None
        return self.driver.mounts(layer_hex, self.rw_dir(record.id))

    def mount(self, ref: str) -> Path:
        """Mount the container's rootfs at `containers/<id>/merged` (counted: each mount
        needs an unmount)."""
        with self.lock.held():
            containers = self._load()
            record = self._find(containers, ref)
            target = self.merged(record.id)
            if not is_mountpoint(target):
                target.mkdir(exist_ok=True)
                mount_all(self._mounts(record), target)
                record = replace(record, mounts=0)
            containers[record.id] = replace(record, mounts=record.mounts + 1)
            self._save(containers, durable=False)
            return target

    def mounts(self, ref: str) -> list:
        """The mounts that make the rootfs (for a runtime spec instead of mounting here)."""
        return self._mounts(self.get(ref))

    def unmount(self, ref: str, *, force: bool = False) -> bool:
        """Drop one mount (all with `force`); unmount when none are left. True if still mounted."""
        with self.lock.held():
            containers = self._load()
            record = self._find(containers, ref)
            count = 0 if force else max(record.mounts - 1, 0)
            target = self.merged(record.id)
            if count == 0:
                unmount_all_under(target)
            containers[record.id] = replace(record, mounts=count)
            self._save(containers, durable=False)
            return count > 0

    def is_mounted(self, ref: str) -> bool:
        return is_mountpoint(self.merged(self.get(ref).id))

    def remove(self, ref: str, *, force: bool = True) -> ContainerRecord:
        """Unmount (unless `force` is False and it is mounted), delete the RW layer,
        drop the layer references."""
        with self.lock.held():
            containers = self._load()
            record = self._find(containers, ref)
            target = self.merged(record.id)
            if is_mountpoint(target) and not force:
                raise ContainerMounted(f"container {record.id} is mounted at {target}")
            unmount_all_under(self.path(record.id))
            del containers[record.id]
            self._save(containers)
            remove_tree(self.path(record.id))
            self.layers.drop_user(record.layer, record.user)
            return record

    def retire(self, ref: str) -> tuple[ContainerRecord, Path]:
        """Remove the record now and move the directory aside, mounts and all; the caller
        finishes with `finish_removal(path)`. `run --rm` does that in the background: an
        unmount waits for an RCU grace period (~10 ms) nobody needs to wait for. A
        directory left aside (the finisher killed) is swept by `repair()`."""
        with self.lock.held():
            containers = self._load()
            record = self._find(containers, ref)
            aside = self.dir / f".removing-{record.id}"
            os.rename(self.path(record.id), aside)
            del containers[record.id]
            self._save(containers, durable=False)
            self.layers.drop_user(record.layer, record.user)
            return record, aside

    def diff(self, ref: str, out: BinaryIO) -> Any:
        """The container's changes as an OCI layer tar (uncompressed) written to `out`."""
        record = self.get(ref)
        layer_hex = self.layers.get(record.layer).hex if record.layer is not None else None
        return self.driver.diff(layer_hex, self.rw_dir(record.id), out)

    def repair(self) -> tuple[dict[str, str | None], list[str]]:
        """Fix mount counts of mounts that are gone, drop records without a directory,
        remove directories without a record. Returns (user -> top layer, actions)."""
        actions: list[str] = []
        with self.lock.held():
            containers = self._load()
            original = dict(containers)
            mounted_now = set(mountpoints())  # read once: this runs on every Store.open
            for container_id, record in list(containers.items()):
                if not self.rw_dir(container_id).exists():
                    finish_removal(self.path(container_id))
                    del containers[container_id]
                    actions.append(f"dropped container {container_id}: no read-write layer")
                    continue
                mounted = is_mountpoint(self.merged(container_id), mounted_now)
                if record.mounts and not mounted:
                    containers[container_id] = replace(record, mounts=0)
                    actions.append(f"container {container_id}: mount gone, count reset")
                elif mounted and not record.mounts:
                    containers[container_id] = replace(record, mounts=1)
            for entry in sorted(p.name for p in self.dir.iterdir()):
                if entry not in containers and not reservations.held(self.dir / entry):
                    # also `.removing-*` a killed finisher left
                    finish_removal(self.dir / entry)
                    actions.append(f"removed unrecorded container directory {self.dir / entry}")
            if containers != original:
                self._save(containers)
            return {r.user: r.layer for r in containers.values()}, actions


def finish_removal(path: Path) -> None:
    """Unmount and delete a directory `ContainerStore.retire` moved aside."""
    unmount_all_under(path)
    remove_tree(path)


__all__ = ["ContainerRecord", "ContainerStore", "finish_removal"]
