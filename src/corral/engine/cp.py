"""`cp` between a container and the host (docker cp's rules).

Where a container path lives on the host:
- a running container: under `/proc/<pid>/root` (its mount namespace: volumes,
  binds and tmpfs mounts included);
- otherwise: the container's RW layer mounted from the store (it works for created
  and exited containers), with paths under the spec's bind mounts (volumes, `-v`)
  mapped to their host sources.
Paths are resolved with `secure_join`, so a symlink in the container never leads out
of it; the last component is not followed unless `follow_link` (docker's -L).

Copy rules (docker): SRC a file → DEST a file, or DEST/basename(SRC) if DEST is an
existing directory; SRC a directory → DEST created as its copy, or DEST/basename(SRC)
if DEST exists; `SRC/.` copies the directory's content into DEST. Files copied into a
container belong to root (0:0) unless `archive` (-a) keeps their owners.

Writes into a container never follow its symlinks: the destination directory is
resolved with `secure_join`, then everything below is created relative to directory
fds opened with O_NOFOLLOW (a symlink the container planted in the way is replaced or
refused, never written through — docker cp's CVE-2018-15664 class of bugs).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from corral.errors import InvalidArgument, NotFound, SystemFailure


class ContainerPathNotFound(NotFound):
    """The path does not exist in the container."""


def _bind_mounts(bundle: Path) -> list[tuple[str, str]]:
    try:
        spec = json.loads((bundle / "config.json").read_text())
    except (OSError, ValueError):
        return []
    out = []
    for m in spec.get("mounts") or []:
        opts = m.get("options") or []
        if (m.get("type") == "bind" or "bind" in opts or "rbind" in opts) and \
                m.get("source", "").startswith("/") and os.path.isdir(m["source"]):
            out.append((os.path.normpath(m["destination"]), m["source"]))
    return sorted(out, key=lambda item: len(item[0]), reverse=True)


class ContainerFS:
    """A container's filesystem as host paths (use `open_container_fs`)."""

    def __init__(self, root: str, binds: list[tuple[str, str]]):
        self.root = root
        self.binds = binds

    def resolve(self, path: str, *, follow_link: bool = False) -> str:
        """The host path of container path `path` (last component kept unless followed)."""
        if not path.startswith("/"):
            path = "/" + path
        norm = os.path.normpath(path)
        parent, name = os.path.split(norm)
        if follow_link or name in ("", ".", ".."):
            return self._join(norm)
        return os.path.join(self._join(parent), name)

    def _join(self, path: str) -> str:
        from corral.linux.mounts import secure_join

        for dest, source in self.binds:
            if path == dest or path.startswith(dest.rstrip("/") + "/"):
                return secure_join(source, path[len(dest):])
        return secure_join(self.root, path)


@contextmanager
def open_container_fs(store: Any, container_id: str, pid: int | None) -> Iterator[ContainerFS]:
    """The container's filesystem: through its process when it runs, else mounted."""
    if pid:
        root = f"/proc/{pid}/root"
        if os.path.isdir(root):
            yield ContainerFS(root, [])
            return
    record = store.container(container_id)
    rootfs = store.mount(record.id)
    try:
        yield ContainerFS(str(rootfs), _bind_mounts(store.container_dir(record.id)))
    finally:
        store.unmount(record.id)


def _cp(args: list[str]) -> None:
    result = subprocess.run(["cp", *args], capture_output=True, text=True, timeout=3600,
                            check=False)
    if result.returncode != 0:
        raise SystemFailure(f"copy failed: {result.stderr.strip()}")


def _copy(src: str, dest: str, *, contents: bool, follow_link: bool) -> str:
    """Copy host path `src` to host path `dest` with docker's rules; returns the target."""
    src_is_dir = os.path.isdir(src) and (follow_link or not os.path.islink(src))
    if contents and not src_is_dir:
        raise InvalidArgument(f"{src}: '/.' needs a directory")
    flags = ["-a"] + (["-L"] if follow_link else ["-P"])
    if src_is_dir:
        if contents:
            os.makedirs(dest, exist_ok=True)
            for name in sorted(os.listdir(src)):
                _cp(flags + ["--", os.path.join(src, name), dest])
            return dest
        target = os.path.join(dest, os.path.basename(src.rstrip("/"))) \
            if os.path.isdir(dest) else dest
        if os.path.exists(target) and not os.path.isdir(target):
            raise InvalidArgument(f"cannot copy a directory onto the file {target}")
        _cp(flags + ["-T", "--", src, target])
        return target
    if dest.endswith("/") and not os.path.isdir(dest):
        raise NotFound(f"destination directory {dest} does not exist")
    target = os.path.join(dest, os.path.basename(src)) if os.path.isdir(dest) else dest
    if not os.path.isdir(os.path.dirname(target) or "."):
        raise NotFound(f"destination directory {os.path.dirname(target)} does not exist")
    _cp(flags + ["-T", "--", src, target])
    return target


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _copy_in(src: str, dir_fd: int, name: str, *, archive: bool, follow_link: bool) -> None:
    """Copy host path `src` to `name` in the directory `dir_fd` inside a container, never
    following a symlink on the container side (a container could plant one to send the
    write to the host: every step is relative to an O_NOFOLLOW directory fd)."""
    import shutil
    import stat

    st = os.stat(src) if follow_link else os.lstat(src)
    uid, gid = (st.st_uid, st.st_gid) if archive else (0, 0)
    try:
        existing: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            raise InvalidArgument(f"cannot overwrite non-directory {name!r} with a directory")
        if existing is None:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            for child in sorted(os.listdir(src)):
                _copy_in(os.path.join(src, child), fd, child, archive=archive,
                         follow_link=follow_link)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)
        return
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise InvalidArgument(f"cannot overwrite directory {name!r} with a non-directory")
        os.unlink(name, dir_fd=dir_fd)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), name, dir_fd=dir_fd)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    elif stat.S_ISREG(st.st_mode):
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o600, dir_fd=dir_fd)
        try:
            with open(src, "rb") as f, os.fdopen(os.dup(out), "wb") as w:
                shutil.copyfileobj(f, w, 1 << 20)
            os.fchown(out, uid, gid)
            os.fchmod(out, mode)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dir_fd)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    # sockets are skipped, as tar does


def _open_dest_dir(path: str) -> int:
    try:
        return os.open(path, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"{path}: no such directory") from None


def copy_from_container(store: Any, container_id: str, src: str, dest: str, *,
                        pid: int | None = None, follow_link: bool = False) -> str:
    """Container path `src` → host path `dest`."""
    contents = src.endswith("/.")
    with open_container_fs(store, container_id, pid) as fs:
        host_src = fs.resolve(src.rstrip(".").rstrip("/") if contents else src,
                              follow_link=follow_link or contents)
        if not os.path.lexists(host_src):
            raise ContainerPathNotFound(f"could not find the file {src} in container "
                                        f"{container_id[:12]}")
        if src.endswith("/") and not contents and not os.path.isdir(host_src):
            raise InvalidArgument(f"{src}: not a directory")
        # -L resolved SRC itself (inside the container); below it links stay links, so an
        # absolute link in the container is never followed on the host
        return _copy(host_src, dest, contents=contents, follow_link=False)


def copy_to_container(store: Any, container_id: str, src: str, dest: str, *,
                      pid: int | None = None, archive: bool = False,
                      follow_link: bool = False) -> str:
    """Host path `src` → container path `dest`."""
    contents = src.endswith("/.")
    if not os.path.lexists(src.rstrip(".") if contents else src):
        raise NotFound(f"{src}: no such file or directory")
    with open_container_fs(store, container_id, pid) as fs:
        host_dest = fs.resolve(dest, follow_link=True)
        if dest.endswith("/") and not os.path.isdir(host_dest):
            raise NotFound(f"{dest}: no such directory in container {container_id[:12]}")
        if not os.path.isdir(os.path.dirname(host_dest.rstrip("/")) or "/"):
            raise NotFound(f"{os.path.dirname(dest)}: no such directory in container "
                           f"{container_id[:12]}")
        source = src[:-2] if contents else src
        if os.path.isdir(host_dest):
            parent, names = host_dest, (sorted(os.listdir(source)) if contents
                                        else [os.path.basename(source.rstrip("/"))])
            sources = [os.path.join(source, n) for n in names] if contents else [source]
        elif contents:
            parent, _ = os.path.split(host_dest)
            fd = _open_dest_dir(parent)
            try:
                os.mkdir(os.path.basename(host_dest), 0o755, dir_fd=fd)
            finally:
                os.close(fd)
            parent, names = host_dest, sorted(os.listdir(source))
            sources = [os.path.join(source, n) for n in names]
        else:
            parent, name = os.path.split(host_dest)
            names, sources = [name], [source]
        fd = _open_dest_dir(parent)
        try:
            for path, name in zip(sources, names):
                _copy_in(path, fd, name, archive=archive, follow_link=follow_link)
        finally:
            os.close(fd)
        return host_dest


def tar_from_container(store: Any, container_id: str, src: str, out: BinaryIO, *,
                       pid: int | None = None) -> None:
    """`cp CONTAINER:SRC -`: a tar of SRC on `out` (docker's format: one top entry)."""
    with open_container_fs(store, container_id, pid) as fs:
        host_src = fs.resolve(src)
        if not os.path.lexists(host_src):
            raise ContainerPathNotFound(f"could not find the file {src} in container "
                                        f"{container_id[:12]}")
        parent, name = os.path.split(host_src.rstrip("/"))
        proc = subprocess.Popen(["tar", "-C", parent, "-cf", "-", "--", name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 16):
            out.write(chunk)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemFailure(f"tar failed: {err.decode(errors='replace').strip()}")


class UnsafeArchive(InvalidArgument):
    """A tar member would land outside the destination (absolute, .., through a symlink)."""


def _check_member_path(name: str, symlinks: set[str], what: str) -> str:
    norm = os.path.normpath(name)
    if norm.startswith(("/", "../")) or norm == "..":
        raise UnsafeArchive(f"tar {what} {name!r} points outside the destination")
    parts = norm.split("/")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in symlinks:
            raise UnsafeArchive(f"tar {what} {name!r} goes through a symlink in the archive")
    return norm


def safe_extract(stream: BinaryIO, target: str) -> list[str]:
    """Extract a tar stream into the empty directory `target`, refusing members that
    would leave it (absolute names, `..`, paths through the archive's own symlinks, hard
    links to such paths). Owners are kept numerically. Returns the top-level names."""
    import tarfile

    symlinks: set[str] = set()
    tops: list[str] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                name = _check_member_path(member.name, symlinks, "member")
                if name == ".":
                    continue
                if name in symlinks:  # writing through it would follow the link
                    raise UnsafeArchive(f"tar member {member.name!r} replaces a symlink "
                                        "of the archive")
                if member.islnk():
                    _check_member_path(member.linkname, symlinks, "hard link")
                if member.issym():
                    symlinks.add(name)
                member.name = name
                top = name.split("/")[0]
                if top not in tops:
                    tops.append(top)
                archive.extract(member, target, numeric_owner=True)
    except tarfile.TarError as exc:
        raise InvalidArgument(f"not a valid tar stream: {exc}") from None
    return tops


def untar_into_container(store: Any, container_id: str, dest: str, stream: BinaryIO, *,
                         pid: int | None = None, tmpdir: str | None = None) -> str:
    """`cp - CONTAINER:DEST`: a tar stream extracted into the directory DEST (docker)."""
    import shutil
    import tempfile

    staging = tempfile.mkdtemp(prefix="cp-", dir=tmpdir)
    try:
        tops = safe_extract(stream, staging)
        with open_container_fs(store, container_id, pid) as fs:
            host_dest = fs.resolve(dest, follow_link=True)
            if not os.path.isdir(host_dest):
                raise NotFound(f"{dest}: no such directory in container {container_id[:12]}")
            fd = _open_dest_dir(host_dest)
            try:
                for top in tops:
                    _copy_in(os.path.join(staging, top), fd, top, archive=True,
                             follow_link=False)
            finally:
                os.close(fd)
        return host_dest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["ContainerFS", "ContainerPathNotFound", "UnsafeArchive", "copy_from_container",
           "copy_to_container", "open_container_fs", "safe_extract", "tar_from_container",
           "untar_into_container"]
