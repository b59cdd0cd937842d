"""Apply and diff OCI layer changesets (image-spec layer.md).

`apply_layer` extracts a gzip / zstd / plain layer tar into a directory while
hashing the uncompressed bytes (the layer's diff id). The tar is parsed by a
small streaming reader here (ustar, GNU long names, PAX incl. binary
`SCHILY.xattr.*`, GNU sparse) rather than `tarfile`: reading the tar in 1 MiB
chunks and writing file data straight from that buffer removes most per-member
overhead (see bench/layer_unpack.sh).

Whiteouts (`.wh.<name>`, `.wh..wh..opq`) are translated for the storage driver:
- `overlay`: the target is the layer's own (empty) diff directory; a whiteout
  becomes a 0:0 character device and an opaque dir gets
  `trusted.overlay.opaque=y` (the kernel's overlayfs format).
- `vfs`: the target already holds a copy of the parent layers; a whiteout
  removes the path, an opaque marker removes the directory's contents that came
  from lower layers (not the entries this layer wrote, whatever their order).

Path safety (every entry, link target and whiteout):
- names are relative; an absolute name (`/etc/x`) is refused — docker and
  containerd would strip the `/`, but Corral follows issue 4 and the fact that
  tools writing OCI layers never emit them; a `..` component anywhere is refused;
- the tree is walked component by component with `openat(O_NOFOLLOW)` from a
  descriptor of the target, so the kernel itself never follows a symlink for us;
  a symlink met as a parent component is followed only if it is relative and,
  resolved lexically from its own directory, stays inside the target (e.g.
  `lib -> usr/lib`); an absolute one or one climbing above the target is refused;
- the last component is created with `O_CREAT|O_EXCL|O_NOFOLLOW`, `mkdirat`,
  `symlinkat`, `mknodat`, `linkat` without `AT_SYMLINK_FOLLOW`: an existing
  entry is removed first (spec "Changeset over existing files"), never written
  through; a hard link's target is resolved by the same rules and must exist
  inside the target (a hard link to a symlink that leads outside is refused);
- a refusal raises `HostileLayer` naming the entry; nothing outside the target
  has been written (entries before it were written inside the target).

Ownership is numeric (uname/gname ignored, spec "File Attributes") and applied
only when running as root; `trusted.overlay.*` xattrs from a layer are dropped
(a layer must not steer overlayfs).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

from corral.errors import InvalidArgument, SystemFailure, Unavailable

__all__ = [
    "AppliedLayer",
    "HostileLayer",
    "LayerApplyFailed",
    "LayerError",
    "LayerNeedsPrivilege",
    "apply_layer",
    "diff_dirs",
    "diff_layer",
    "open_layer",
]

WHITEOUT_PREFIX = b".wh."
OPAQUE = b".wh..wh..opq"
WHITEOUT_META = b".wh..wh."
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

BLOCK = 512
_CHUNK = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINK_HOPS = 40
_MAX_CACHED_DIRS = 400


class LayerError(InvalidArgument):
    """A layer tar is malformed or uses something Corral does not extract."""


class HostileLayer(LayerError):
    """A layer entry tries to reach outside the directory it is applied to."""


class LayerApplyFailed(SystemFailure):
    """The kernel refused an operation while applying a layer entry."""


class LayerNeedsPrivilege(Unavailable):
    """The layer needs a privilege this process lacks (device nodes, trusted xattrs)."""


@dataclass(frozen=True)
class AppliedLayer:
    """A layer's diff id (sha256 of the uncompressed tar) and that tar's size in bytes."""

    diff_id: str
    size: int


def open_layer(stream: BinaryIO) -> BinaryIO:
    """The uncompressed tar stream of a gzip, zstd or plain layer stream."""
    from corral.image.compression import open_layer as _open

    return _open(stream)


def _show(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------
# Streaming tar reader


class _Source:
    """The uncompressed tar bytes: buffered in large chunks, hashed as read."""

    __slots__ = ("_base", "_buf", "_digest", "_hash", "_mv", "_pos", "_raw", "size")

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._buf = b""
        self._mv = memoryview(b"")
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]
        self._hash = hashlib.sha256()
        # a compression.Pipeline hashes on its own thread: no second pass here
        self._digest = getattr(raw, "output_digest", None)
        self.size = 0

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def _fill(self) -> bool:
        try:
            data = self._raw.read(_CHUNK)
        except Exception as err:  # corrupt gzip/zstd: the decompressors' own types
            raise LayerError(f"layer stream at byte {self.offset}: {err}") from err
        if not data:
            return False
        if self._digest is None:
            self._hash.update(data)
        self.size += len(data)
        rest = self._buf[self._pos :]
        self._base += self._pos
        self._buf = rest + data if rest else data
        self._mv = memoryview(self._buf)
        self._pos = 0
        return True

    def read(self, n: int) -> bytes:
        end = self._pos + n
        while end > len(self._buf):
            if not self._fill():
                raise LayerError(f"layer tar truncated at byte {self.offset}")
            end = self._pos + n
        data = self._buf[self._pos : end]
        self._pos = end
        return data

    def block(self) -> bytes | None:
        """The next 512-byte block, or None at the end of the stream."""
        end = self._pos + BLOCK
        if end > len(self._buf):
            if not self._fill() and self._pos == len(self._buf):
                return None
            return self.read(BLOCK)
        data = self._buf[self._pos : end]
        self._pos = end
        return data

    def copy_to(self, fd: int, n: int) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._fill():
                    raise LayerError(f"layer tar truncated at byte {self.offset}")
                avail = len(self._buf)
            m = min(avail, n)
            view = self._mv[self._pos : self._pos + m]
            while view:
                view = view[os.write(fd, view) :]
            self._pos += m
            n -= m

    def skip(self, n: int) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._fill():
                    raise LayerError(f"layer tar truncated at byte {self.offset}")
                avail = len(self._buf)
            m = min(avail, n)
            self._pos += m
            n -= m

    def drain(self) -> None:
        self._pos = len(self._buf)
        while self._fill():
            self._pos = len(self._buf)

    def digest(self) -> str:
        if self._digest is not None:
            return str(self._digest())
        return "sha256:" + self._hash.hexdigest()


class _Entry:
    """One tar member after its extended headers were folded in."""

    __slots__ = (
        "devmajor",
        "devminor",
        "gid",
        "kind",
        "linkname",
        "mode",
        "mtime_ns",
        "name",
        "realsize",
        "size",
        "sparse",
        "uid",
        "xattrs",
    )
    name: bytes
    kind: int
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: bytes
    devmajor: int
    devminor: int

    def __init__(self) -> None:
        self.xattrs: dict[str, bytes] | None = None
        self.sparse: list[tuple[int, int]] | None = None
        self.realsize = 0


def _num(field: bytes) -> int:
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            value -= 256 ** (len(field) - 1)
        return value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise LayerError(f"bad number {field!r} in a tar header") from None


def _nts(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _parse_pax(data: bytes, where: str) -> list[tuple[bytes, bytes]]:
    records: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(data) and data[pos] != 0:
        sp = data.find(b" ", pos)
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise LayerError(f"{where}: malformed PAX header") from None
        end = pos + length
        if sp < 0 or length <= 0 or end > len(data) or data[end - 1] != 0x0A:
            raise LayerError(f"{where}: malformed PAX header")
        key, eq, value = data[sp + 1 : end - 1].partition(b"=")
        if not eq:
            raise LayerError(f"{where}: malformed PAX record {key!r}")
        records.append((key, value))
        pos = end
    return records


def _pax_time_ns(value: bytes) -> int:
    sec, _, frac = value.partition(b".")
    negative = sec.startswith(b"-")
    ns = int(sec) * 1_000_000_000 + (-1 if negative else 1) * int((frac + b"000000000")[:9] or 0)
    return ns


_REGULAR = frozenset(b"07\0")
_KNOWN = frozenset(b"0123456\0SD7")
_WITH_DATA = frozenset(b"07\0SD")


def _members(src: _Source) -> Iterator[_Entry]:
    """The tar's entries; the consumer may read or skip each one's data."""
    global_pax: dict[bytes, bytes] = {}
    pax: list[tuple[bytes, bytes]] | None = None
    longname: bytes | None = None
    longlink: bytes | None = None
    while True:
        hdr = src.block()
        if hdr is None:
            return  # no end-of-archive blocks: accepted like GNU tar does
        if hdr == _ZERO_BLOCK:
            return
        if len(hdr) < BLOCK:
            raise LayerError("layer tar truncated in a header")
        chksum = _num(hdr[148:156])
        if chksum != sum(hdr) - sum(hdr[148:156]) + 256:
            raise LayerError(f"bad tar header checksum at byte {src.offset - BLOCK}")
        kind = hdr[156]
        size = _num(hdr[124:136])
        name = _nts(hdr[0:100])
        if hdr[257:263] == b"ustar\x00":
            prefix = _nts(hdr[345:500])
            if prefix:
                name = prefix + b"/" + name
        where = _show(longname or name)
        if kind in (0x78, 0x67, 0x4C, 0x4B, 0x58):  # x g L K X(old pax)
            if size > 64 << 20:
                raise LayerError(f"{where}: extended header of {size} bytes")
            data = src.read(size)
            src.skip(-size % BLOCK)
            if kind == 0x4C:
                longname = _nts(data)
            elif kind == 0x4B:
                longlink = _nts(data)
            elif kind == 0x67:
                global_pax.update(_parse_pax(data, where))
            else:
                pax = (pax or []) + _parse_pax(data, where)
            continue
        if kind not in _KNOWN:
            raise LayerError(f"{where}: unsupported tar entry type {chr(kind)!r}")
        e = _Entry()
        e.name = longname if longname is not None else name
        e.linkname = longlink if longlink is not None else _nts(hdr[157:257])
        e.kind = kind
        e.mode = _num(hdr[100:108]) & 0o7777
        e.uid = _num(hdr[108:116])
        e.gid = _num(hdr[116:124])
        e.size = size
        e.mtime_ns = _num(hdr[136:148]) * 1_000_000_000
        e.devmajor = _num(hdr[329:337]) if kind in (0x33, 0x34) else 0
        e.devminor = _num(hdr[337:345]) if kind in (0x33, 0x34) else 0
        if kind == 0x53:  # GNU old sparse
            _gnu_sparse(src, hdr, e)
        if pax is not None or global_pax:
            _apply_pax(e, list(global_pax.items()), local=False)
            if pax is not None:
                _apply_pax(e, pax, local=True)
        pax = longname = longlink = None
        if kind in (0x30, 0, 0x37) and e.name.endswith(b"/"):
            e.kind = 0x35  # pre-POSIX directories
        stored = e.size if kind in _WITH_DATA else 0
        start = src.offset
        if e.sparse is not None and e.kind != 0x53:  # PAX sparse
            _pax_sparse_map(src, e, where)
        yield e
        used = src.offset - start
        src.skip(max(stored - used, 0) + (-stored % BLOCK))


def _apply_pax(e: _Entry, records: list[tuple[bytes, bytes]], *, local: bool) -> None:
    offsets: list[int] = []
    sparse_name = None
    for key, value in records:
        if key == b"path":
            if local:
                e.name = value
        elif key == b"linkpath":
            if local:
                e.linkname = value
        elif key == b"size":
            e.size = int(value)
        elif key == b"uid":
            e.uid = int(value)
        elif key == b"gid":
            e.gid = int(value)
        elif key == b"mtime":
            e.mtime_ns = _pax_time_ns(value)
        elif key.startswith(b"SCHILY.xattr."):
            if e.xattrs is None:
                e.xattrs = {}
            e.xattrs[key[13:].decode("utf-8", "surrogateescape")] = value
        elif key.startswith(b"GNU.sparse."):
            sub = key[11:]
            if sub == b"name" and local:
                sparse_name = value
            elif sub in (b"realsize", b"size"):
                e.realsize = int(value)
            elif sub == b"major" and value == b"1":
                e.sparse = []
            elif sub == b"map":  # 0.1
                nums = [int(x) for x in value.split(b",") if x]
                e.sparse = list(zip(nums[0::2], nums[1::2]))
            elif sub == b"offset":  # 0.0
                offsets.append(int(value))
            elif sub == b"numbytes":
                if e.sparse is None:
                    e.sparse = []
                e.sparse.append((offsets[-1] if offsets else 0, int(value)))
    if sparse_name is not None:
        e.name = sparse_name
    if e.sparse is not None and not e.realsize:
        e.realsize = e.size


def _pax_sparse_map(src: _Source, e: _Entry, where: str) -> None:
    """PAX sparse 1.0: the map is decimal lines at the start of the data."""
    if e.sparse:  # 0.0 / 0.1 maps came in the header
        e.kind = 0x53
        return
    start = src.offset
    text = b""
    while True:
        text += src.read(BLOCK)
        lines = text.split(b"\n")
        if len(lines) > 1:
            try:
                count = int(lines[0])
            except ValueError:
                raise LayerError(f"{where}: malformed sparse map") from None
            if len(lines) - 1 >= 1 + 2 * count:
                nums = [int(x) for x in lines[1 : 1 + 2 * count]]
                e.sparse = list(zip(nums[0::2], nums[1::2]))
                break
        if len(text) > 1 << 20:
            raise LayerError(f"{where}: sparse map too long")
    e.size -= src.offset - start
    e.kind = 0x53


def _gnu_sparse(src: _Source, hdr: bytes, e: _Entry) -> None:
    sparse: list[tuple[int, int]] = []

    def entries(block: bytes, start: int, count: int) -> None:
        for i in range(count):
            off = block[start + i * 24 : start + i * 24 + 12]
            num = block[start + i * 24 + 12 : start + i * 24 + 24]
            if off[0] == 0 and num[0] == 0:
                continue
            sparse.append((_num(off), _num(num)))

    entries(hdr, 386, 4)
    extended = hdr[482]
    e.realsize = _num(hdr[483:495])
    while extended:
        blk = src.read(BLOCK)
        entries(blk, 0, 21)
        extended = blk[504]
    e.sparse = sparse


# --------------------------------------------------------------------------
# Applying entries


def _split(name: bytes, what: str) -> list[bytes]:
    if name.startswith(b"/"):
        raise HostileLayer(f"{what}: absolute path {_show(name)!r} refused")
    comps = [c for c in name.split(b"/") if c and c != b"."]
    if b".." in comps:
        raise HostileLayer(f"{what}: '..' in path {_show(name)!r} refused")
    for c in comps:
        if b"\0" in c:
            raise LayerError(f"{what}: NUL byte in path")
    return comps


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


class _Tree:
    """Descriptors of the target's directories, walked without following symlinks."""

    def __init__(self, root_fd: int) -> None:
        self.root = root_fd
        self.dirs: dict[bytes, int] = {}  # real relative path -> O_DIRECTORY fd

    def trim(self) -> None:
        if len(self.dirs) > _MAX_CACHED_DIRS:
            self.close()

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()

    def forget(self, real: bytes) -> None:
        """`real` was removed or replaced: drop it and everything under it."""
        prefix = real + b"/"
        for key in [k for k in self.dirs if k == real or k.startswith(prefix)]:
            os.close(self.dirs.pop(key))

    def adopt(self, real: bytes, fd: int) -> None:
        old = self.dirs.get(real)
        if old is not None:
            os.close(old)
        self.dirs[real] = fd

    def walk(self, comps: list[bytes], what: str, create: bool) -> tuple[int, bytes]:
        """(fd, real path) of directory `comps`, following only safe in-target symlinks."""
        if not comps:
            return self.root, b""
        key = b"/".join(comps)
        fd = self.dirs.get(key)
        if fd is not None:
            return fd, key
        resolved: list[bytes] = []
        fd = self.root
        todo = comps[::-1]
        hops = 0
        while todo:
            comp = todo.pop()
            real = _join(b"/".join(resolved), comp)
            cached = self.dirs.get(real)
            if cached is not None:
                resolved.append(comp)
                fd = cached
                continue
            try:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise LayerError(f"{what}: {_show(real)} does not exist in the layer") from None
                try:
                    os.mkdir(comp, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as err:
                    raise LayerApplyFailed(f"{what}: mkdir {_show(real)}: {err.strerror}") from err
                todo.append(comp)
                hops += 1
                if hops > _MAX_LINK_HOPS * 4:
                    raise LayerApplyFailed(f"{what}: {_show(real)} keeps changing")
                continue
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise LayerApplyFailed(f"{what}: open {_show(real)}: {err.strerror}") from err
                try:
                    link = os.readlink(comp, dir_fd=fd)
                except OSError:
                    raise LayerError(
                        f"{what}: {_show(real)} is not a directory"
                    ) from None
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise HostileLayer(f"{what}: too many symlinks at {_show(real)}")
                resolved = _resolve_link(resolved, link, what, real)
                todo.extend(reversed(resolved))
                resolved = []
                fd = self.root
                continue
            self.dirs[real] = nfd
            resolved.append(comp)
            fd = nfd
        return fd, b"/".join(resolved)


def _resolve_link(parent: list[bytes], link: bytes, what: str, at: bytes) -> list[bytes]:
    """The components `link` (a symlink in directory `parent`) points to, inside the target."""
    if link.startswith(b"/"):
        raise HostileLayer(
            f"{what}: goes through symlink {_show(at)} -> {_show(link)}, which leads outside the layer"
        )
    out = list(parent)
    for part in link.split(b"/"):
        if not part or part == b".":
            continue
        if part == b"..":
            if not out:
                raise HostileLayer(
                    f"{what}: goes through symlink {_show(at)} -> {_show(link)}, "
                    "which leads outside the layer"
                )
            out.pop()
        else:
            out.append(part)
    return out


def _privileged(err: OSError) -> bool:
    return err.errno in (errno.EPERM, errno.EACCES)


class _Applier:
    def __init__(self, root_fd: int, whiteouts: str) -> None:
        self.tree = _Tree(root_fd)
        self.overlay = whiteouts == "overlay"
        self.root = os.geteuid() == 0
        self.euid = os.geteuid()
        self.egid = os.getegid()
        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.created: set[bytes] = set()  # vfs: real paths this layer wrote
        self.dir_times: list[tuple[bytes, int]] = []
        self.setgid_dirs: dict[int, bool] = {}

    # -- helpers ---------------------------------------------------------
    def _remove(self, pfd: int, preal: bytes, name: bytes, what: str) -> None:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        real = _join(preal, name)
        try:
            if stat.S_ISDIR(st.st_mode):
                self.tree.forget(real)
                shutil.rmtree(name, dir_fd=pfd)  # fd-based, never follows symlinks
            else:
                os.unlink(name, dir_fd=pfd)
        except OSError as err:
            raise LayerApplyFailed(f"{what}: removing {_show(real)}: {err.strerror}") from err

    def _owner_needed(self, e: _Entry, pfd: int) -> bool:
        if not self.root:
            return False
        if e.uid != self.euid or e.gid != self.egid:
            return True
        sg = self.setgid_dirs.get(pfd)
        if sg is None:
            sg = bool(os.fstat(pfd).st_mode & stat.S_ISGID)
            self.setgid_dirs[pfd] = sg
        return sg

    def _xattrs(self, target: int | str, e: _Entry, what: str, follow: bool = True) -> None:
        assert e.xattrs is not None
        for key, value in e.xattrs.items():
            if key.startswith("trusted.overlay."):
                continue
            try:
                os.setxattr(target, key, value, follow_symlinks=follow)
            except OSError as err:
                if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) or (
                    not self.root and _privileged(err)
                ):
                    continue
                raise LayerApplyFailed(f"{what}: setxattr {key}: {err.strerror}") from err

    # -- entry kinds -----------------------------------------------------
    def apply(self, e: _Entry, src: _Source) -> None:
        what = _show(e.name)
        self.tree.trim()
        comps = _split(e.name, what)
        if not comps:
            if e.kind == 0x35:
                self._dir_attrs(self.tree.root, b"", e, what)
                return
            raise LayerError(f"{what}: a non-directory entry for the layer's root")
        name = comps[-1]
        if name.startswith(WHITEOUT_PREFIX):
            self._whiteout(comps, what)
            return
        pfd, preal = self.tree.walk(comps[:-1], what, create=True)
        kind = e.kind
        try:
            if kind == 0x30 or kind == 0 or kind == 0x37:
                self._file(e, pfd, preal, name, src, what)
            elif kind == 0x35:
                self._dir(e, pfd, preal, name, what)
            elif kind == 0x32:
                self._symlink(e, pfd, preal, name, what)
            elif kind == 0x31:
                self._hardlink(e, pfd, preal, name, what)
            elif kind == 0x53:
                self._file(e, pfd, preal, name, src, what)
            elif kind == 0x44:  # GNU dumpdir: a directory
                self._dir(e, pfd, preal, name, what)
            else:
                self._node(e, pfd, preal, name, what)
        except OSError as err:
            raise LayerApplyFailed(f"{what}: {err.strerror}") from err
        if not self.overlay:
            self.created.add(_join(preal, name))

    def _file(self, e: _Entry, pfd: int, preal: bytes, name: bytes, src: _Source, what: str) -> None:
        mode = e.mode
        try:
            fd = os.open(name, _FILE_FLAGS, mode & 0o777, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, preal, name, what)
            fd = os.open(name, _FILE_FLAGS, mode & 0o777, dir_fd=pfd)
        try:
            if e.sparse is not None:
                self._sparse(fd, e, src)
            elif e.size:
                src.copy_to(fd, e.size)
            if self._owner_needed(e, pfd):
                os.fchown(fd, e.uid, e.gid)
                os.fchmod(fd, mode)
            elif mode & 0o7000 or mode & self.umask:
                os.fchmod(fd, mode)
            if e.xattrs:
                self._xattrs(fd, e, what)
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
        finally:
            os.close(fd)

    def _sparse(self, fd: int, e: _Entry, src: _Source) -> None:
        assert e.sparse is not None
        left = e.size
        for offset, length in e.sparse:
            length = min(length, left)
            if length <= 0:
                continue
            os.lseek(fd, offset, os.SEEK_SET)
            src.copy_to(fd, length)
            left -= length
        os.ftruncate(fd, e.realsize or e.size)

    def _dir(self, e: _Entry, pfd: int, preal: bytes, name: bytes, what: str) -> None:
        real = _join(preal, name)
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self._remove(pfd, preal, name, what)
                os.mkdir(name, 0o700, dir_fd=pfd)
        fd = self.tree.dirs.get(real)
        if fd is None:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            self.tree.adopt(real, fd)
        self.setgid_dirs.pop(fd, None)
        self._dir_attrs(fd, real, e, what)

    def _dir_attrs(self, fd: int, real: bytes, e: _Entry, what: str) -> None:
        if self.root:
            os.fchown(fd, e.uid, e.gid)
        os.fchmod(fd, e.mode)
        self.setgid_dirs.pop(fd, None)
        if e.xattrs:
            self._xattrs(fd, e, what)
        self.dir_times.append((real, e.mtime_ns))

    def _symlink(self, e: _Entry, pfd: int, preal: bytes, name: bytes, what: str) -> None:
        try:
            os.symlink(e.linkname, name, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, preal, name, what)
            os.symlink(e.linkname, name, dir_fd=pfd)
        if self._owner_needed(e, pfd):
            os.chown(name, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        if e.xattrs:
            self._xattrs(f"/proc/self/fd/{pfd}/{os.fsdecode(name)}", e, what, follow=False)
        os.utime(name, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, e: _Entry, pfd: int, preal: bytes, name: bytes, what: str) -> None:
        src_comps = _split(e.linkname, f"{what} (hard link to {_show(e.linkname)})")
        if not src_comps:
            raise HostileLayer(f"{what}: hard link to the layer's root")
        sfd, sreal = self.tree.walk(src_comps[:-1], what, create=False)
        sname = src_comps[-1]
        try:
            st = os.stat(sname, dir_fd=sfd, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(
                f"{what}: hard link target {_show(e.linkname)} is not in the layer"
            ) from None
        if stat.S_ISLNK(st.st_mode):
            parent = sreal.split(b"/") if sreal else []
            _resolve_link(parent, os.readlink(sname, dir_fd=sfd), what, _join(sreal, sname))
        if stat.S_ISDIR(st.st_mode):
            raise LayerError(f"{what}: hard link to directory {_show(e.linkname)}")
        if sfd == pfd and sname == name:
            return
        try:
            os.link(sname, name, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileExistsError:
            self._remove(pfd, preal, name, what)
            os.link(sname, name, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _node(self, e: _Entry, pfd: int, preal: bytes, name: bytes, what: str) -> None:
        kind = e.kind
        if kind == 0x33:
            fmt, dev = stat.S_IFCHR, os.makedev(e.devmajor, e.devminor)
        elif kind == 0x34:
            fmt, dev = stat.S_IFBLK, os.makedev(e.devmajor, e.devminor)
        else:
            fmt, dev = stat.S_IFIFO, 0
        try:
            self._mknod(pfd, preal, name, fmt | (e.mode & 0o777), dev, what)
        except PermissionError as err:
            raise LayerNeedsPrivilege(
                f"{what}: creating a device node needs CAP_MKNOD ({err.strerror})"
            ) from err
        self._path_attrs(e, pfd, name, what)

    def _mknod(self, pfd: int, preal: bytes, name: bytes, mode: int, dev: int, what: str) -> None:
        try:
            os.mknod(name, mode, dev, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, preal, name, what)
            os.mknod(name, mode, dev, dir_fd=pfd)

    def _path_attrs(self, e: _Entry, pfd: int, name: bytes, what: str) -> None:
        """Owner, mode, xattrs, mtime of a node that must not be opened (device, fifo)."""
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            proc = f"/proc/self/fd/{fd}"
            if self._owner_needed(e, pfd):
                os.chown(name, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(proc, e.mode)
            if e.xattrs:
                self._xattrs(proc, e, what)
        finally:
            os.close(fd)
        os.utime(name, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, comps: list[bytes], what: str) -> None:
        name = comps[-1]
        pfd, preal = self.tree.walk(comps[:-1], what, create=True)
        if name == OPAQUE:
            if self.overlay:
                try:
                    os.setxattr(pfd, OVERLAY_OPAQUE_XATTR, b"y")
                except OSError as err:
                    cls = LayerNeedsPrivilege if _privileged(err) else LayerApplyFailed
                    raise cls(f"{what}: setting {OVERLAY_OPAQUE_XATTR}: {err.strerror}") from err
            else:
                self._purge_lower(pfd, preal, what)
            return
        if name.startswith(WHITEOUT_META):
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): ignored like docker does
        victim = name[len(WHITEOUT_PREFIX) :]
        if not victim:
            raise LayerError(f"{what}: whiteout without a name")
        if victim in (b".", b"..") or b"/" in victim:
            raise HostileLayer(f"{what}: whiteout of {_show(victim)!r} refused")
        real = _join(preal, victim)
        if self.overlay:
            try:
                os.stat(victim, dir_fd=pfd, follow_symlinks=False)
                return  # written by this layer itself: a whiteout hides only lower layers
            except FileNotFoundError:
                pass
            try:
                os.mknod(victim, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
            except OSError as err:
                cls = LayerNeedsPrivilege if _privileged(err) else LayerApplyFailed
                raise cls(f"{what}: creating the overlay whiteout: {err.strerror}") from err
        elif real not in self.created:
            self._remove(pfd, preal, victim, what)

    def _purge_lower(self, dfd: int, dreal: bytes, what: str) -> None:
        """vfs opaque dir: remove what lower layers put in it, keep this layer's entries."""
        for entry in os.listdir(dfd):
            name = os.fsencode(entry)
            real = _join(dreal, name)
            if real not in self.created:
                self._remove(dfd, dreal, name, what)
                continue
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                cfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                try:
                    self._purge_lower(cfd, real, what)
                finally:
                    os.close(cfd)

    def finish(self) -> None:
        """Directory mtimes, deepest first, after everything inside them was written."""
        self.tree.close()
        self.dir_times.sort(key=lambda item: item[0].count(b"/"), reverse=True)
        done: set[bytes] = set()
        for real, mtime_ns in self.dir_times:
            if real in done:
                continue
            done.add(real)
            fd = _open_strict(self.tree.root, real)
            if fd is None:
                continue
            try:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                if fd != self.tree.root:
                    os.close(fd)


def _open_strict(root_fd: int, real: bytes) -> int | None:
    """fd of directory `real` under root, no symlink anywhere; None if gone."""
    if not real:
        return root_fd
    fd = root_fd
    for comp in real.split(b"/"):
        try:
            nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            nfd = -1
        if fd != root_fd:
            os.close(fd)
        if nfd < 0:
            return None
        fd = nfd
    return fd


WhiteoutFormat = Literal["overlay", "vfs"]


def apply_layer(
    stream: BinaryIO, target: os.PathLike[str] | str, *, whiteouts: WhiteoutFormat = "overlay"
) -> AppliedLayer:
    """Extract a gzip/zstd/plain layer tar into `target`; see the module docstring.

    Returns the diff id (sha256 of the uncompressed tar, all of it up to EOF)
    and the uncompressed size. Raises `HostileLayer` for escapes, `LayerError`
    for malformed tars, `LayerNeedsPrivilege` / `LayerApplyFailed` for the kernel.
    """
    if whiteouts not in ("overlay", "vfs"):
        raise InvalidArgument(f"whiteouts must be 'overlay' or 'vfs', not {whiteouts!r}")
    raw = open_layer(stream)
    src = _Source(raw)
    try:
        root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise LayerApplyFailed(f"opening {target}: {err.strerror}") from err
    applier = _Applier(root_fd, whiteouts)
    try:
        for entry in _members(src):
            applier.apply(entry, src)
        applier.finish()
        src.drain()
    except OSError as err:
        raise LayerApplyFailed(f"applying a layer to {target}: {err}") from err
    finally:
        applier.tree.close()
        os.close(root_fd)
        if raw is not stream:
            raw.close()
    return AppliedLayer(src.digest(), src.size)


def diff_layer(lower_dirs: list, upper, out: BinaryIO) -> AppliedLayer:  # type: ignore[no-untyped-def]
    """An OCI layer tar of an overlay upper dir; see `corral.image.layer_diff`."""
    from corral.image.layer_diff import diff_layer as _diff

    return _diff(lower_dirs, upper, out)


def diff_dirs(old, new, out: BinaryIO) -> AppliedLayer:  # type: ignore[no-untyped-def]
    """An OCI layer tar of the changes from `old` to `new`; see `corral.image.layer_diff`."""
    from corral.image.layer_diff import diff_dirs as _diff

    return _diff(old, new, out)
