"""The `oci-archive:PATH[:REF]` transport: an OCI image layout packed in a tar.

Reading indexes the tar's members and reads blobs in place (no extraction; see
`_files.TarFiles`). Writing builds the layout in a temporary directory next to
PATH and packs it (`oci-layout`, `index.json`, `blobs/...`, as podman and
skopeo write them) to a temporary file renamed onto PATH on commit, so a failed
save leaves no partial archive.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from corral.image.transports._files import TarFiles
from corral.image.transports.oci_layout import LayoutDestination, LayoutSource
from corral.image.transports.types import ArchiveNotFound, TransportError


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tar.gettarinfo(str(path), arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    if info.isdir():
        tar.addfile(info)
        return
    with open(path, "rb") as f:
        tar.addfile(info, f)


def pack_directory(root: Path, out_path: Path) -> None:
    """Tar the layout at `root` into `out_path` (temp -> rename), sorted, owner 0:0."""
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in ("oci-layout", "index.json"):
                _add(tar, root / name, name)
            for directory, dirs, files in os.walk(root / "blobs"):
                dirs.sort()
                rel = os.path.relpath(directory, root)
                _add(tar, Path(directory), rel)
                for name in sorted(files):
                    _add(tar, Path(directory) / name, f"{rel}/{name}")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


class ArchiveDestination(LayoutDestination):
    def __init__(self, path: Path, ref: str | None) -> None:
        self.archive = Path(path)
        parent = self.archive.parent
        if not parent.is_dir():
            raise ArchiveNotFound(f"{self.archive}: directory {parent} does not exist")
        if self.archive.is_dir():
            raise TransportError(f"{self.archive}: is a directory")
        self.workdir = Path(tempfile.mkdtemp(prefix=".corral-oci-", dir=parent))
        super().__init__(self.workdir / "layout", ref)

    def commit(self) -> None:
        super().commit()
        pack_directory(self.root, self.archive)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class ArchiveReference:
    transport = "oci-archive"

    def __init__(self, path: str, ref: str | None = None, tmpdir: str | None = None) -> None:
        self.path = Path(path)
        self.ref = ref or None
        self.tmpdir = tmpdir

    def open_source(self) -> LayoutSource:
        files = TarFiles(self.path, self.tmpdir)
        try:
            return LayoutSource(files, self.ref)
        except BaseException:
            files.close()
            raise

    def open_destination(self) -> ArchiveDestination:
        return ArchiveDestination(self.path, self.ref)

    def __str__(self) -> str:
        return f"oci-archive:{self.path}" + (f":{self.ref}" if self.ref else "")
