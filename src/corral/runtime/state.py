"""Container state on disk: `<root>/<id>/state.json` and the `exec.fifo`.

The runtime spec's state (runtime.md#state) is ociVersion, id, status, pid,
bundle and annotations. Status is never stored: it is derived from the
processes, like runc does — `created` while the init waits on exec.fifo,
`running` while the init lives, `stopped` after. The init's start time
(/proc/<pid>/stat field 22) guards against a recycled pid.

state.json is written to a temporary name and renamed, so a reader never sees
half a file. It is not fsynced: the state describes processes, which a crash
or reboot ends anyway, and /run is meant to be tmpfs (where it is a disk, as on
some VMs, fsync cost several ms per create). Container ids are validated
before any path is built.
"""

from __future__ import annotations

import os
import time

from corral.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from corral.linux.procfs import start_time
from corral.oci import fastjson

DEFAULT_ROOT = "/run/corral-runtime"
STATE_FILE = "state.json"
FIFO_NAME = "exec.fifo"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


class ContainerNotFound(NotFound):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id!r} does not exist")


class ContainerExists(AlreadyExists):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id!r} already exists")


def validate_id(container_id: str) -> str:
    """runc's rule: letters, digits and `_+-.`, not `.` or `..`, at most 1024 bytes."""
    if (not container_id or container_id in (".", "..") or len(container_id) > 1024
            or not _ID_CHARS.issuperset(container_id)):
        raise InvalidArgument(f"invalid container id {container_id!r}: use letters, digits "
                              "and _+-. only")
    return container_id


def process_start_time(pid: int) -> int | None:
    """The process's start time, or None if it is gone or a zombie."""
    return start_time(pid)


class Container:
    """One container's directory under the runtime root."""

    def __init__(self, root: str, container_id: str) -> None:
        self.id = validate_id(container_id)
        self.root = root
        self.dir = os.path.join(root, container_id)
        self.data: dict = {}

    # -- paths ------------------------------------------------------------
    @property
    def fifo_path(self) -> str:
        return os.path.join(self.dir, FIFO_NAME)

    @property
    def state_path(self) -> str:
        return os.path.join(self.dir, STATE_FILE)

    # -- lifecycle of the directory ---------------------------------------
    def make_dir(self) -> None:
        """Claim the id: mkdir is atomic, so two creates of one id cannot both win."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o711)
        except FileExistsError:
            raise ContainerExists(self.id) from None

    def remove_dir(self) -> None:
        """The directory holds only flat files (state.json, exec.fifo, temporaries)."""
        try:
            entries = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in entries:
            path = os.path.join(self.dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        try:
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass

    @classmethod
    def load(cls, root: str, container_id: str) -> Container:
        container = cls(root, container_id)
        try:
            with open(container.state_path, "rb") as f:
                container.data = fastjson.loads(f.read())
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None
        except ValueError:
            raise FailedPrecondition(f"container {container_id!r}: state file is corrupt: "
                                     f"{container.state_path}") from None
        return container

    def save(self) -> None:
        text = fastjson.dumps(self.data)
        temporary = self.state_path + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(temporary, self.state_path)

    # -- derived state ----------------------------------------------------
    @property
    def pid(self) -> int:
        return self.data.get("pid", 0)

    def init_alive(self) -> bool:
        pid = self.pid
        return pid > 0 and process_start_time(pid) == self.data.get("init_start_time")

    def status(self) -> str:
        if not self.data.get("pid"):
            return "creating"
        if not self.init_alive():
            return "stopped"
        if os.path.exists(self.fifo_path):
            return "created"
        if self._frozen():
            return "paused"
        return "running"

    def _frozen(self) -> bool:
        path = self.data.get("freezer_state_file")
        if not path:
            return False
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            return False
        return value in ("FROZEN", "1")

    def oci_state(self) -> dict:
        """The spec's state object (schema/state-schema.json)."""
        status = self.status()
        state = {
            "ociVersion": self.data.get("ociVersion", "1.2.0"),
            "id": self.id,
            "status": status,
            "pid": self.pid if status != "stopped" else 0,
            "bundle": self.data.get("bundle", ""),
        }
        if self.data.get("annotations"):
            state["annotations"] = self.data["annotations"]
        return state

    def runc_state(self) -> dict:
        """`runc state` output: the spec's state plus runc's extra fields."""
        state = self.oci_state()
        state.update({
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": self.data.get("owner", ""),
        })
        state.setdefault("annotations", {})
        return state


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(name for name in names
                  if os.path.exists(os.path.join(root, name, STATE_FILE)))


def timestamp() -> str:
    """RFC 3339 with nanoseconds, like runc's `created`."""
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
