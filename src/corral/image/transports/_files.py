"""Read-only file access inside an archive or a directory, by relative path.

Archive transports read members in place (never extracting): `TarFiles` indexes a
tar's members once (`tarfile` over a seekable plain file; a gzip/zstd-compressed
archive is first decompressed to an anonymous temporary file), resolving
symlinks and hard links between members the way docker-archive's legacy
`<id>/layer.tar -> ../<hex>.tar` entries need. `DirFiles` reads a directory,
refusing paths that leave it. Paths are normalized; `..` and absolute paths are
refused, so a hostile manifest cannot point a reader outside its archive.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from corral.image.transports.types import ArchiveNotFound, TransportError

MAX_METADATA = 16 << 20  # a manifest/config/index larger than this is refused


class NoClose:
    """A read-only view of an open file whose `close` (and `with` exit) does nothing:
    for handing out a temporary file that its owner closes later."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def __enter__(self) -> NoClose:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass


def clean(path: str, where: str) -> str:
    """A normalized relative path (no `..`, not absolute); TransportError otherwise."""
    if not isinstance(path, str) or not path:
        raise TransportError(f"{where}: expected a relative path, got {path!r}")
    norm = posixpath.normpath(path.lstrip("/") if path.startswith("./") else path)
    if norm == ".." or norm.startswith(("/", "../")):
        raise TransportError(f"{where}: path {path!r} leaves the archive")
    return norm


class Files:
    name: str

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def open(self, path: str) -> BinaryIO:
        raise NotImplementedError

    def size(self, path: str) -> int:
        raise NotImplementedError

    def read(self, path: str, limit: int = MAX_METADATA) -> bytes:
        if self.size(path) > limit:
            raise TransportError(f"{self.name}: {path} is larger than {limit} bytes")
        with self.open(path) as f:
            return f.read()

    def close(self) -> None:
        pass


class DirFiles(Files):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = str(root)

    def _path(self, path: str) -> Path:
        return self.root / clean(path, self.name)

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def open(self, path: str) -> BinaryIO:
        try:
            return open(self._path(path), "rb")
        except FileNotFoundError:
            raise ArchiveNotFound(f"{self.name}: {path} not found") from None

    def size(self, path: str) -> int:
        try:
            return self._path(path).stat().st_size
        except FileNotFoundError:
            raise ArchiveNotFound(f"{self.name}: {path} not found") from None


def open_plain(path: Path, tmpdir: str | None = None) -> BinaryIO:
    """`path` opened for reading; a gzip/zstd file is decompressed to a temporary file first."""
    from corral.image.compression import open_layer, sniff

    try:
        f: BinaryIO = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise ArchiveNotFound(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TransportError(f"{path}: is a directory, not an archive") from None
    head = f.read(4)
    f.seek(0)
    if sniff(head) == "tar":
        return f
    with f:
        plain = tempfile.TemporaryFile(dir=tmpdir)  # noqa: SIM115
        with open_layer(f) as decompressed:
            shutil.copyfileobj(decompressed, plain, 1 << 20)
        plain.seek(0)
        return plain  # type: ignore[return-value]


class TarFiles(Files):
    """Members of a tar archive (see the module docstring)."""

    def __init__(self, path: Path, tmpdir: str | None = None) -> None:
        self.name = str(path)
        self._file = open_plain(path, tmpdir)
        try:
            self._tar = tarfile.open(fileobj=self._file, mode="r:")  # noqa: SIM115
            self._members: dict[str, tarfile.TarInfo] = {}
            for member in self._tar.getmembers():
                try:
                    name = clean(member.name, self.name)
                except TransportError:
                    continue  # never addressable
                self._members[name] = member
        except tarfile.TarError as exc:
            self._file.close()
            raise UnknownTar(f"{path}: not a tar archive ({exc})") from None
        except BaseException:
            self._file.close()
            raise

    def names(self) -> list[str]:
        return list(self._members)

    def _member(self, path: str) -> tarfile.TarInfo:
        seen = 0
        name = clean(path, self.name)
        while True:
            member = self._members.get(name)
            if member is None:
                raise ArchiveNotFound(f"{self.name}: no member {path}")
            if member.issym():
                base = posixpath.dirname(name)
                name = clean(posixpath.join(base, member.linkname), self.name)
            elif member.islnk():
                name = clean(member.linkname, self.name)
            else:
                if not member.isfile():
                    raise TransportError(f"{self.name}: {path} is not a regular file")
                return member
            seen += 1
            if seen > 16:
                raise TransportError(f"{self.name}: too many links resolving {path}")

    def exists(self, path: str) -> bool:
        try:
            self._member(path)
        except (ArchiveNotFound, TransportError):
            return False
        return True

    def size(self, path: str) -> int:
        return self._member(path).size

    def open(self, path: str) -> BinaryIO:
        handle = self._tar.extractfile(self._member(path))
        assert handle is not None
        return handle  # type: ignore[return-value]

    def close(self) -> None:
        self._tar.close()
        self._file.close()


class UnknownTar(TransportError):
    """The file is not a tar archive at all."""


def sniff_archive(path: Path) -> str:
    """"docker-archive", "oci-archive" or "oci" (a layout directory) for `path`."""
    from corral.image.transports.types import UnknownFormat

    if path.is_dir():
        if (path / "oci-layout").is_file():
            return "oci"
        raise UnknownFormat(f"{path}: a directory without an oci-layout file is not an "
                            "OCI image layout")
    if not os.path.exists(path):
        raise ArchiveNotFound(f"{path}: no such file")
    try:
        files = TarFiles(path)
    except UnknownTar:
        raise UnknownFormat(f"{path}: not a docker-archive or oci-archive "
                            "(not a tar archive)") from None
    try:
        if files.exists("manifest.json"):
            return "docker-archive"
        if files.exists("oci-layout") and files.exists("index.json"):
            return "oci-archive"
    finally:
        files.close()
    raise UnknownFormat(f"{path}: not a docker-archive or oci-archive (no manifest.json, "
                        "and no oci-layout with index.json)")
