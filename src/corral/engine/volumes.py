"""Named volumes: directories under the store that outlive containers (docker's
`local` volume driver).

    <root>/volumes/volumes.json    {"volumes": [{name, created, labels, anonymous,
                                     needs_copy_up, users: [container ids]}]}
    <root>/volumes/volumes.lock    flock around every read-modify-write of it
    <root>/volumes/<name>/_data    the directory mounted into containers

`volumes.lock` is a leaf lock: nothing else is locked while it is held (container
liveness is checked through the container's directory, which storage creates and
removes under its own lock), so it can be taken under the engine's container lock or
storage.lock without a cycle.

Users: `acquire(name, container_id)` (the spec builder, at create) records the
container; a user whose container directory is gone no longer counts, so a removed
container needs no release call (`release` exists for tidiness). `remove` refuses a
volume with live users unless forced (then the caller's `remove_container` callback
removes those containers first, as `podman volume rm -f`).

Copy-up (docker semantics): the first time a new volume is mounted, if it is empty
and the image has content at the mount point, that content (with owners, modes,
xattrs) is copied into it, and the volume's root takes the mount point's owner and
mode. Later mounts never copy again.
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from corral.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from corral.records_light import dataclass, field

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class VolumeNotFound(NotFound):
    """No volume has that name."""


class VolumeExists(AlreadyExists):
    """A volume with that name exists already."""


class VolumeInUse(FailedPrecondition):
    """Containers use the volume; remove them first or force."""


@dataclass(frozen=True)
class Volume:
    name: str
    mountpoint: str
    created: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    needs_copy_up: bool = True
    users: tuple[str, ...] = ()

    def inspect(self) -> dict[str, Any]:
        """podman/docker `volume inspect` fields."""
        return {"Name": self.name, "Driver": "local", "Mountpoint": self.mountpoint,
                "CreatedAt": self.created, "Labels": dict(self.labels), "Scope": "local",
                "Options": {}, "Anonymous": self.anonymous, "Containers": list(self.users)}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 255:
        raise InvalidArgument(f"volume name {name!r} is not valid ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    return name


class VolumeStore:
    """The volumes of one store root."""

    def __init__(self, root: Path | str, containers_dir: Path | str | None = None):
        from corral.storage.records import FileLock

        self.root = Path(root)
        self.dir = self.root / "volumes"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o711)
        self.file = self.dir / "volumes.json"
        self.lock = FileLock(self.dir / "volumes.lock")
        self.containers_dir = Path(containers_dir) if containers_dir is not None \
            else self.root / "storage" / "containers"

    @classmethod
    def for_store(cls, store: Any) -> VolumeStore:
        return cls(store.root, store.containers.dir)

    # -- records ---------------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, Any]]:
        from corral.storage.records import read_json

        data = read_json(self.file, {"volumes": []})
        return {v["name"]: v for v in data.get("volumes", [])}

    def _save(self, volumes: dict[str, dict[str, Any]]) -> None:
        from corral.storage.records import write_json

        write_json(self.file, {"volumes": [volumes[k] for k in sorted(volumes)]})

    def _alive(self, container_id: str) -> bool:
        return bool(re.fullmatch(r"[0-9a-f]{64}", container_id)) and \
            (self.containers_dir / container_id).is_dir()

    def _volume(self, data: dict[str, Any]) -> Volume:
        return Volume(name=data["name"], mountpoint=str(self.data_dir(data["name"])),
                      created=data.get("created", ""), labels=dict(data.get("labels") or {}),
                      anonymous=bool(data.get("anonymous")),
                      needs_copy_up=bool(data.get("needs_copy_up", True)),
                      users=tuple(u for u in data.get("users", []) if self._alive(u)))

    def data_dir(self, name: str) -> Path:
        return self.dir / check_name(name) / "_data"

    # -- queries -----------------------------------------------------------------------
    def list(self) -> list[Volume]:
        with self.lock.held():
            return [self._volume(v) for v in self._load().values()]

    def get(self, name: str) -> Volume:
        check_name(name)
        with self.lock.held():
            data = self._load().get(name)
            if data is None:
                raise VolumeNotFound(f"no such volume {name!r}")
            return self._volume(data)

    def exists(self, name: str) -> bool:
        with self.lock.held():
            return name in self._load()

    # -- changes -----------------------------------------------------------------------
    def create(self, name: str | None = None, *, labels: dict[str, str] | None = None,
               anonymous: bool = False, exist_ok: bool = False) -> Volume:
        from corral.storage.records import now

        if name is None:
            name = os.urandom(32).hex()
            anonymous = True
        check_name(name)
        with self.lock.held():
            volumes = self._load()
            if name in volumes:
                if exist_ok:
                    return self._volume(volumes[name])
                raise VolumeExists(f"volume with name {name} already exists")
            data_dir = self.data_dir(name)
            if data_dir.parent.exists():  # left by a crash between mkdir and save
                import shutil

                shutil.rmtree(data_dir.parent)
            data_dir.mkdir(parents=True)
            os.chmod(data_dir, 0o755)
            record = {"name": name, "created": now(), "labels": dict(labels or {}),
                      "anonymous": anonymous, "needs_copy_up": True, "users": []}
            volumes[name] = record
            try:
                self._save(volumes)
            except BaseException:
                import shutil

                shutil.rmtree(data_dir.parent, ignore_errors=True)
                raise
            return self._volume(record)

    def acquire(self, name: str | None, container_id: str, *, copy_from: Path | None = None,
                nocopy: bool = False, create: bool = True) -> Volume:
        """The volume `name` (created if missing, when `create`; None: a new anonymous
        one), recorded as used by `container_id`; copy-up from `copy_from` (the image's
        content at the mount point, inside the mounted rootfs) on its first use."""
        with self.lock.held():
            volumes = self._load()
            if name is None or name not in volumes:
                if not create:
                    raise VolumeNotFound(f"no such volume {name!r}")
                name = self.create(name).name
                volumes = self._load()
            record = volumes[name]
            users = [u for u in record.get("users", []) if self._alive(u)]
            if container_id not in users:
                users.append(container_id)
            record["users"] = users
            if record.get("needs_copy_up", True):
                if not nocopy and copy_from is not None:
                    copy_up(copy_from, self.data_dir(name))
                record["needs_copy_up"] = False
            self._save(volumes)
            return self._volume(record)

    def release(self, container_id: str) -> None:
        """Forget `container_id` as a user of every volume (anonymous ones stay)."""
        with self.lock.held():
            volumes = self._load()
            changed = False
            for record in volumes.values():
                if container_id in record.get("users", []):
                    record["users"] = [u for u in record["users"] if u != container_id]
                    changed = True
            if changed:
                self._save(volumes)

    def users(self, name: str) -> builtins.list[str]:
        return list(self.get(name).users)

    def remove(self, name: str, *, force: bool = False,
               remove_container: Callable[[str], Any] | None = None) -> Volume:
        """Remove a volume and its data. In use: VolumeInUse, unless `force` (then every
        user is removed first with `remove_container`)."""
        volume = self.get(name)
        if volume.users:
            if not force:
                raise VolumeInUse(f"volume {name} is being used by the following "
                                  "container(s): " + ", ".join(volume.users)
                                  + ": remove them first or use -f")
            if remove_container is None:
                raise VolumeInUse(f"volume {name} is in use and no way to remove its "
                                  "containers was given")
            for user in volume.users:
                remove_container(user)
        with self.lock.held():
            volumes = self._load()
            record = volumes.get(name)
            if record is None:
                raise VolumeNotFound(f"no such volume {name!r}")
            live = [u for u in record.get("users", []) if self._alive(u)]
            if live:
                raise VolumeInUse(f"volume {name} is being used by the following "
                                  "container(s): " + ", ".join(live))
            del volumes[name]
            self._save(volumes)
            import shutil

            shutil.rmtree(self.dir / name, ignore_errors=True)
            return volume

    def prune(self, *, labels: Iterable[str] = ()) -> builtins.list[str]:
        """Remove every volume no container uses (podman's `volume prune`), optionally
        only those with all the `labels` (`key` or `key=value`)."""
        wanted = list(labels)
        removed = []
        with self.lock.held():
            volumes = self._load()
            for name, record in list(volumes.items()):
                if any(self._alive(u) for u in record.get("users", [])):
                    continue
                have = record.get("labels") or {}
                if not all((w.partition("=")[0] in have) and
                           (not w.partition("=")[1] or have[w.partition("=")[0]]
                            == w.partition("=")[2]) for w in wanted):
                    continue
                del volumes[name]
                removed.append(name)
            if removed:
                self._save(volumes)
            for name in removed:
                import shutil

                shutil.rmtree(self.dir / name, ignore_errors=True)
        return removed

    def remove_anonymous_of(self, container_id: str) -> builtins.list[str]:
        """For `rm -v`/`--rm`: the anonymous volumes only `container_id` used."""
        removed = []
        with self.lock.held():
            volumes = self._load()
            for name, record in list(volumes.items()):
                if not record.get("anonymous") or container_id not in record.get("users", []):
                    continue
                others = [u for u in record["users"] if u != container_id and self._alive(u)]
                if others:
                    continue
                del volumes[name]
                removed.append(name)
            if removed:
                self._save(volumes)
            for name in removed:
                import shutil

                shutil.rmtree(self.dir / name, ignore_errors=True)
        return removed


def copy_up(source: Path, target: Path) -> bool:
    """Copy the directory `source` (the image's content at the mount point) into the
    empty `target`, keeping owners, modes, xattrs, links; True if anything was copied.
    `target` takes `source`'s owner and mode. A missing or non-directory source: no-op."""
    import stat
    import subprocess

    try:
        st = os.lstat(source)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if any(os.scandir(target)):
        return False
    os.chown(target, st.st_uid, st.st_gid)
    os.chmod(target, stat.S_IMODE(st.st_mode))
    if not any(os.scandir(source)):
        return False
    result = subprocess.run(["cp", "-a", "--", f"{source}/.", f"{target}/"],
                            capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode != 0:
        from corral.errors import SystemFailure

        raise SystemFailure(f"copying the image's {source} into volume {target}: "
                            f"{result.stderr.strip()}")
    return True


__all__ = ["Volume", "VolumeExists", "VolumeInUse", "VolumeNotFound", "VolumeStore",
           "check_name", "copy_up"]
