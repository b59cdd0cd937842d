"""A build step's working container: a read-write layer on the step's parent layer,
mounted, run with the OCI runtime's foreground `run` on a bundle of our own
(runtime-spec config.md; what buildah does for RUN), and its changes taken as a
layer from the overlay upper directory (image-spec layer.md changesets).

`StepContainer` is a context manager: whatever happens, the runtime container is
deleted, the rootfs unmounted and the container record and its RW layer removed.
`commit_layer` writes the RW layer's diff straight into the content store (a
pipe: no temporary copy) and applies it as a layer on the parent.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from corral.errors import SystemFailure
from corral.oci.image import OCI_LAYER, Descriptor

OUTPUT_TAIL = 64 << 10
#: A layer tar without entries: the two zero blocks that end an archive.
EMPTY_TAR_SIZE = 1024
#: Diffs up to this size are checked for holding only untouched directories.
SMALL_TAR_SIZE = 64 << 10


#: Container-record metadata: the building process (a storage hold string), and the
#: runtime command + id of the step's runtime container.
BUILD_KEY = "corral.build"
RUNTIME_KEY = "corral.build.runtime"


def remove_stale(store: Any) -> list[str]:
    """Remove working containers of builds whose process is gone (killed mid-step):
    their runtime container, mount and RW layer. Returns their ids."""
    from corral.storage import holds

    removed = []
    for record in store.list_containers():
        owner = (record.metadata or {}).get(BUILD_KEY)
        if not isinstance(owner, str) or holds.alive(owner):
            continue
        runtime = record.metadata.get(RUNTIME_KEY)
        if isinstance(runtime, list) and len(runtime) >= 4:
            subprocess.run(runtime[:-1] + ["delete", "--force", runtime[-1]],
                           capture_output=True, check=False, timeout=60)
        store.remove_container(record.id)
        removed.append(record.id)
    return removed


class StepFailed(SystemFailure):
    """A RUN step exited non-zero; `.code` is its exit code, `.output` its last output."""

    def __init__(self, message: str, code: int, output: str) -> None:
        super().__init__(message)
        self.code = code
        self.output = output


class StepContainer:
    """A working container on `top` (a layer chain id, None for scratch)."""

    def __init__(self, store: Any, top: str | None, image_id: str | None) -> None:
        self.store = store
        self.top = top
        self.image_id = image_id
        self.id = ""
        self.rootfs = Path()
        self.runtime_id = ""
        self._runtime: list[str] | None = None

    def __enter__(self) -> Self:
        from corral.storage import holds

        record = self.store.containers.create(self.top, image=self.image_id,
                                              metadata={BUILD_KEY: holds.current()})
        self.id = record.id
        try:
            self.rootfs = self.store.mount(record.id)
        except BaseException:
            self.store.remove_container(record.id)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runtime is not None:
            subprocess.run(self._runtime + ["delete", "--force", self.runtime_id],
                           capture_output=True, check=False, timeout=60)
        self.store.remove_container(self.id)

    @property
    def bundle(self) -> Path:
        return self.store.container_dir(self.id)

    def run(self, spec: dict[str, Any], runtime: str, runtime_root: str,
            output: Callable[[bytes], None], *, extra_mounts: Sequence[dict] = ()) -> int:
        """Run `spec`'s process in the foreground; output goes to `output` chunk by chunk
        (stdout and stderr together). Returns the exit code."""
        spec = dict(spec)
        spec["mounts"] = _parents_first(list(spec.get("mounts") or []) + list(extra_mounts))
        created = _missing_mount_points(self.rootfs, spec["mounts"])
        spec["root"] = {"path": "merged", "readonly": False}
        (self.bundle / "config.json").write_text(json.dumps(spec))
        self.runtime_id = "corral-build-" + secrets.token_hex(8)
        self._runtime = [runtime, "--root", runtime_root]
        self.store.containers.set_metadata(self.id, **{RUNTIME_KEY: self._runtime +
                                                       [self.runtime_id]})
        proc = subprocess.Popen(self._runtime + ["run", "--bundle", str(self.bundle),
                                                 self.runtime_id],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=str(self.bundle))
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):  # type: ignore[attr-defined]
            output(chunk)
        code = proc.wait()
        # mount points the runtime had to make are not the step's changes
        for path in created:
            _remove_if_empty(path)
        return code

    def _only_touched_dirs(self, digest: str) -> bool:
        """Whether a diff holds only directories that the parent has with the same mode
        and owner: copied up because a mount point was made and removed inside them
        (/etc for /etc/hosts), not changed."""
        if self.top is None:
            return False
        members = _dir_entries(self.store, digest)
        if members is None:
            return False
        from corral.storage.mount import mount_all, unmount_all_under

        view = Path(tempfile.mkdtemp(prefix="parent-", dir=self.bundle))
        try:
            mount_all(self.store.layers.mounts(self.top), view)
            for member in members:
                try:
                    st = os.lstat(view / member.name.strip("/"))
                except OSError:
                    return False
                if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != member.mode \
                        or (st.st_uid, st.st_gid) != (member.uid, member.gid):
                    return False
            return True
        finally:
            unmount_all_under(view)
            shutil.rmtree(view, ignore_errors=True)

    def commit_layer(self) -> tuple[Descriptor, str, str] | None:
        """The RW layer's changes as a layer: (blob descriptor, diff id, chain id); None
        when nothing changed (an empty tar: the step adds no layer, as in BuildKit)."""
        store = self.store
        read_fd, write_fd = os.pipe()
        result: dict[str, Any] = {}

        def produce() -> None:
            try:
                with open(write_fd, "wb", buffering=1 << 20) as out:
                    result["applied"] = store.diff(self.id, out)
            except BaseException as exc:  # noqa: BLE001 - reported by the consumer
                result["error"] = exc

        thread = threading.Thread(target=produce, name="corral-build-diff")
        thread.start()
        try:
            with open(read_fd, "rb", buffering=1 << 20) as stream:
                desc = store.content.ingest(stream, media_type=OCI_LAYER)
        finally:
            thread.join()
        if "error" in result:
            _drop_blob(store, desc.digest)
            raise result["error"]
        diff_id = result["applied"].diff_id
        if diff_id != desc.digest:
            _drop_blob(store, desc.digest)
            raise SystemFailure(f"layer diff of container {self.id[:12]}: digest mismatch")
        if desc.size <= EMPTY_TAR_SIZE or (desc.size <= SMALL_TAR_SIZE and
                                           self._only_touched_dirs(desc.digest)):
            _drop_blob(store, desc.digest)
            return None
        with store.content.open(desc.digest) as blob:
            layer = store.put_layer(blob, self.top, diff_id=diff_id)
        return Descriptor(OCI_LAYER, desc.digest, desc.size), diff_id, layer.id


def _dir_entries(store: Any, digest: str) -> list[tarfile.TarInfo] | None:
    """The entries of a small layer tar if all are directories (no files, links or
    whiteouts); None otherwise."""
    with store.content.open(digest) as blob, tarfile.open(fileobj=blob, mode="r:") as tar:
        members = tar.getmembers()
    for member in members:
        name = member.name.rstrip("/").rsplit("/", 1)[-1]
        if not member.isdir() or name.startswith(".wh."):
            return None
    return members


def _parents_first(mounts: list[dict]) -> list[dict]:
    """Mounts ordered so that a mount comes after the one it lands inside (a host /sys
    bind before /sys/fs/cgroup), keeping the order otherwise."""
    def depth(m: dict) -> int:
        return len([p for p in m["destination"].split("/") if p])

    ordered: list[dict] = []
    for mount in mounts:
        index = len(ordered)
        for i, other in enumerate(ordered):
            dest, odest = mount["destination"].rstrip("/"), other["destination"].rstrip("/")
            if odest.startswith(dest + "/") and depth(mount) < depth(other):
                index = min(index, i)
        ordered.insert(index, mount)
    return ordered


def _missing_mount_points(rootfs: Path, mounts: list[dict]) -> list[Path]:
    """For each mount destination, its top-most path component missing in `rootfs`
    (what the runtime will create)."""
    missing: list[Path] = []
    for mount in mounts:
        current = rootfs
        for part in [p for p in mount["destination"].split("/") if p]:
            current = current / part
            if os.path.islink(current):
                break
            if not os.path.lexists(current):
                if current not in missing:
                    missing.append(current)
                break
            if not current.is_dir():
                break
    return missing


def _remove_if_empty(path: Path) -> None:
    """Remove an empty file, or a tree of empty directories and empty files."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        os.unlink(path)
    elif stat.S_ISDIR(st.st_mode):
        for child in os.listdir(path):
            _remove_if_empty(path / child)
        try:
            os.rmdir(path)
        except OSError:
            pass


def _drop_blob(store: Any, digest: str) -> None:
    if digest in store.referenced_blobs():
        return
    try:
        store.content.delete(digest)
    except Exception:  # noqa: S110, BLE001 - best effort
        pass


__all__ = ["BUILD_KEY", "OUTPUT_TAIL", "RUNTIME_KEY", "StepContainer", "StepFailed", "remove_stale"]
