"""Helpers for the storage tests: layer tars built in memory, a store that always unmounts."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corral.storage import Store
from corral.storage.mount import unmount_all_under


def layer_tar(entries: list[tuple]) -> bytes:
    """A layer tar from (name, kind, extra) tuples: kind file (extra=bytes), dir,
    symlink/hardlink (extra=target), whiteout (name of the deleted entry), opaque (dir)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, *rest in entries:
            extra = rest[0] if rest else None
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            data = None
            if kind == "file":
                data = extra if isinstance(extra, bytes) else b""
                info.size = len(data)
                info.mode = 0o644
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = extra
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = extra
            elif kind == "whiteout":
                head, _, tail = name.rpartition("/")
                info.name = f"{head}/.wh.{tail}" if head else f".wh.{tail}"
            elif kind == "opaque":
                info.name = f"{name.rstrip('/')}/.wh..wh..opq"
            else:
                raise ValueError(kind)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def tar_names(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.rstrip("/").removeprefix("./"): m for m in tar.getmembers()}


@contextmanager
def temp_store(driver: str | None, prefix: str = "corral-storage-") -> Iterator[Store]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield Store.open(root, driver)
    finally:
        unmount_all_under(root)
        shutil.rmtree(root, ignore_errors=True)
