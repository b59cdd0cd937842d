"""Layer diffs: a directory's changes as an OCI layer tar (image-spec layer.md).

- `diff_layer(lower_dirs, upper, out)`: an overlayfs upper dir is already a
  changeset; its 0:0 character devices become `.wh.<name>` entries and
  `trusted.overlay.opaque=y` directories get a `.wh..wh..opq` entry. Uppers
  written with overlay's `redirect_dir` or `metacopy` (a renamed lower dir, a
  metadata-only copy-up) are refused: mount with `redirect_dir=off,metacopy=off`.
- `diff_dirs(old, new, out)`: compares two trees (vfs driver): additions and
  modifications (type, mode, owner, size, mtime, link target, device, xattrs)
  in full, deletions as `.wh.` whiteouts, and the parent directories of every
  change (so that applying recreates them with their attributes).

Output is deterministic: names sorted bytewise; inside a directory the opaque
marker first, then whiteouts, then the other entries depth-first (spec:
"whiteout files appear before sibling directory entries"). Headers are POSIX
ustar with a PAX header only when needed (long names, big numbers, xattrs);
mtimes are whole seconds; uname/gname are empty (numeric ids only). Hard links
among emitted files are written as links to the first emitted path.
`trusted.overlay.*` xattrs are never emitted.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from corral.errors import Unavailable
from corral.image.layer_tar import (
    OPAQUE,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    AppliedLayer,
    LayerApplyFailed,
)

BLOCK = 512
_COPY = 1 << 20


class OverlayFeatureUnsupported(Unavailable):
    """An overlay upper dir uses redirect_dir or metacopy, which a tar cannot express."""


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


class TarWriter:
    """A minimal deterministic POSIX tar writer that hashes what it writes."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._hash.update(data)
        self.size += len(data)

    def _header(
        self,
        name: bytes,
        kind: bytes,
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        size: int = 0,
        mtime: int = 0,
        linkname: bytes = b"",
        devmajor: int = 0,
        devminor: int = 0,
        xattrs: dict[str, bytes] | None = None,
    ) -> None:
        pax: list[bytes] = []
        if len(name) > 100 or not name.isascii():
            pax.append(_pax_record(b"path", name))
        if len(linkname) > 100 or not linkname.isascii():
            pax.append(_pax_record(b"linkpath", linkname))
        if size >= 8**11:
            pax.append(_pax_record(b"size", b"%d" % size))
        if uid >= 8**7:
            pax.append(_pax_record(b"uid", b"%d" % uid))
        if gid >= 8**7:
            pax.append(_pax_record(b"gid", b"%d" % gid))
        if mtime < 0 or mtime >= 8**11:
            pax.append(_pax_record(b"mtime", b"%d" % mtime))
        for key in sorted(xattrs or ()):
            pax.append(_pax_record(b"SCHILY.xattr." + os.fsencode(key), xattrs[key]))  # type: ignore[index]
        if pax:
            data = b"".join(pax)
            base = name.rstrip(b"/").rsplit(b"/", 1)[-1][:80] or b"root"
            self._block(b"PaxHeaders/" + base, b"x", 0o644, 0, 0, len(data), 0, b"", 0, 0)
            self._write(data + bytes(-len(data) % BLOCK))
        self._block(
            name[:100],
            kind,
            mode,
            min(uid, 8**7 - 1),
            min(gid, 8**7 - 1),
            size if size < 8**11 else 0,
            mtime if 0 <= mtime < 8**11 else 0,
            linkname[:100],
            devmajor,
            devminor,
        )

    def _block(
        self, name: bytes, kind: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
        linkname: bytes, devmajor: int, devminor: int,
    ) -> None:
        hdr = bytearray(BLOCK)
        hdr[0 : len(name)] = name
        hdr[100:108] = _octal(mode & 0o7777, 8)
        hdr[108:116] = _octal(uid, 8)
        hdr[116:124] = _octal(gid, 8)
        hdr[124:136] = _octal(size, 12)
        hdr[136:148] = _octal(mtime, 12)
        hdr[148:156] = b" " * 8
        hdr[156:157] = kind
        hdr[157 : 157 + len(linkname)] = linkname
        hdr[257:265] = b"ustar\x0000"
        hdr[329:337] = _octal(devmajor, 8)
        hdr[337:345] = _octal(devminor, 8)
        hdr[148:156] = b"%06o\0 " % sum(hdr)
        self._write(bytes(hdr))

    def whiteout(self, name: bytes) -> None:
        self._header(name, b"0", mode=0o644)

    def add(self, root_fd: int, rel: bytes, st: os.stat_result, xattrs: dict[str, bytes],
            hardlink: bytes | None = None) -> None:
        """Write the entry `rel` (relative to root_fd's directory) with stat `st`."""
        mode, mtime = st.st_mode, int(st.st_mtime)
        common = {"mode": mode, "uid": st.st_uid, "gid": st.st_gid, "mtime": mtime,
                  "xattrs": xattrs}
        if hardlink is not None:
            self._header(rel, b"1", linkname=hardlink, **common)  # type: ignore[arg-type]
        elif stat.S_ISDIR(mode):
            self._header(rel + b"/", b"5", **common)  # type: ignore[arg-type]
        elif stat.S_ISLNK(mode):
            link = os.readlink(rel, dir_fd=root_fd)
            self._header(rel, b"2", linkname=link, **common)  # type: ignore[arg-type]
        elif stat.S_ISREG(mode):
            fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
            try:
                size = os.fstat(fd).st_size
                self._header(rel, b"0", size=size, **common)  # type: ignore[arg-type]
                left = size
                while left:
                    chunk = os.read(fd, min(_COPY, left))
                    if not chunk:
                        raise LayerApplyFailed(f"{os.fsdecode(rel)} shrank while being read")
                    self._write(chunk)
                    left -= len(chunk)
                self._write(bytes(-size % BLOCK))
            finally:
                os.close(fd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = b"3" if stat.S_ISCHR(mode) else b"4"
            self._header(rel, kind, devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev),
                         **common)  # type: ignore[arg-type]
        elif stat.S_ISFIFO(mode):
            self._header(rel, b"6", **common)  # type: ignore[arg-type]
        # sockets are not representable in a tar: skipped like tar does

    def close(self) -> AppliedLayer:
        self._write(bytes(2 * BLOCK))
        return AppliedLayer("sha256:" + self._hash.hexdigest(), self.size)


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for key in names:
        if key.startswith("trusted.overlay."):
            continue
        try:
            out[key] = os.getxattr(path, key, follow_symlinks=False)
        except OSError:
            continue
    return out


def _listdir(path: str) -> list[bytes]:
    return sorted(os.listdir(os.fsencode(path)))


class _Emitter:
    """Emits entries under a root, writing each pending parent directory first."""

    def __init__(self, root: str, writer: TarWriter) -> None:
        self.root = root
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.writer = writer
        self.pending: list[bytes] = []  # parent dirs not yet written
        self.links: dict[tuple[int, int], bytes] = {}

    def path(self, rel: bytes) -> str:
        return os.path.join(self.root, os.fsdecode(rel))

    def flush(self) -> None:
        for rel in self.pending:
            st = os.stat(rel, dir_fd=self.root_fd, follow_symlinks=False)
            self.writer.add(self.root_fd, rel, st, _xattrs(self.path(rel)))
        self.pending.clear()

    def emit(self, rel: bytes, st: os.stat_result) -> None:
        self.flush()
        hardlink = None
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            hardlink = self.links.get(key)
            if hardlink is None:
                self.links[key] = rel
        self.writer.add(self.root_fd, rel, st, _xattrs(self.path(rel)), hardlink)

    def whiteout(self, parent: bytes, name: bytes) -> None:
        self.flush()
        self.writer.whiteout(_join(parent, WHITEOUT_PREFIX + name if name != OPAQUE else OPAQUE))

    def close(self) -> None:
        os.close(self.root_fd)


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def diff_layer(lower_dirs: list[Path], upper: Path, out: BinaryIO) -> AppliedLayer:
    """The overlay upper dir `upper` as an OCI layer tar written to `out`."""
    del lower_dirs  # whiteouts are emitted as the kernel made them; lowers not needed
    writer = TarWriter(out)
    em = _Emitter(str(upper), writer)
    try:
        _diff_upper(em, b"")
    except OSError as err:
        raise LayerApplyFailed(f"diffing {upper}: {err}") from err
    finally:
        em.close()
    return writer.close()


def _diff_upper(em: _Emitter, rel: bytes) -> None:
    dpath = em.path(rel) if rel else em.root
    try:
        opaque = os.getxattr(dpath, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        opaque = False
    for feature in ("trusted.overlay.redirect", "trusted.overlay.metacopy"):
        try:
            os.getxattr(dpath, feature, follow_symlinks=False)
        except OSError:
            continue
        raise OverlayFeatureUnsupported(
            f"{dpath}: overlay {feature.rsplit('.', 1)[-1]} cannot be expressed as a layer tar"
        )
    if opaque and rel:
        em.whiteout(rel, OPAQUE)
    names = _listdir(dpath)
    stats = {n: os.stat(_join(rel, n), dir_fd=em.root_fd, follow_symlinks=False) for n in names}
    rest = []
    for name in names:
        if _is_whiteout(stats[name]):
            em.whiteout(rel, name)
        else:
            rest.append(name)
    for name in rest:
        child = _join(rel, name)
        st = stats[name]
        if stat.S_ISDIR(st.st_mode):
            em.pending.append(child)
            _diff_upper(em, child)
            if em.pending and em.pending[-1] == child:
                em.flush()  # an empty (or only-unchanged) directory is still a change
        else:
            em.emit(child, st)


def diff_dirs(old: Path, new: Path, out: BinaryIO) -> AppliedLayer:
    """The changes from tree `old` to tree `new` as an OCI layer tar written to `out`."""
    writer = TarWriter(out)
    em = _Emitter(str(new), writer)
    old_fd = os.open(old, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _diff_tree(em, str(old), old_fd, b"", True)
    except OSError as err:
        raise LayerApplyFailed(f"diffing {old} and {new}: {err}") from err
    finally:
        os.close(old_fd)
        em.close()
    return writer.close()


def _changed(old_root: str, old_fd: int, em: _Emitter, rel: bytes,
             o: os.stat_result, n: os.stat_result) -> bool:
    if stat.S_IFMT(o.st_mode) != stat.S_IFMT(n.st_mode):
        return True
    if (o.st_mode, o.st_uid, o.st_gid) != (n.st_mode, n.st_uid, n.st_gid):
        return True
    if not stat.S_ISDIR(n.st_mode):
        if o.st_size != n.st_size or o.st_mtime_ns != n.st_mtime_ns:
            return True
        if stat.S_ISLNK(n.st_mode) and os.readlink(rel, dir_fd=old_fd) != os.readlink(
            rel, dir_fd=em.root_fd
        ):
            return True
        if (stat.S_ISCHR(n.st_mode) or stat.S_ISBLK(n.st_mode)) and o.st_rdev != n.st_rdev:
            return True
    return _xattrs(os.path.join(old_root, os.fsdecode(rel))) != _xattrs(em.path(rel))


def _diff_tree(em: _Emitter, old_root: str, old_fd: int, rel: bytes, old_is_dir: bool) -> None:
    new_names = _listdir(em.path(rel) if rel else em.root)
    old_names = _listdir(os.path.join(old_root, os.fsdecode(rel))) if old_is_dir else []
    new_set = set(new_names)
    for gone in old_names:
        if gone not in new_set:
            em.whiteout(rel, gone)
    old_set = set(old_names)
    for name in new_names:
        child = _join(rel, name)
        n = os.stat(child, dir_fd=em.root_fd, follow_symlinks=False)
        o = os.stat(child, dir_fd=old_fd, follow_symlinks=False) if name in old_set else None
        if o is None or _changed(old_root, old_fd, em, child, o, n):
            em.emit(child, n)
            if stat.S_ISDIR(n.st_mode):
                _diff_tree(em, old_root, old_fd, child, o is not None and stat.S_ISDIR(o.st_mode))
        elif stat.S_ISDIR(n.st_mode):
            em.pending.append(child)
            _diff_tree(em, old_root, old_fd, child, True)
            if em.pending and em.pending[-1] == child:
                em.pending.pop()  # nothing changed below: not part of the diff
