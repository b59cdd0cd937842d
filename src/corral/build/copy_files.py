"""COPY and ADD into a working container's root filesystem (Dockerfile reference:
COPY Source/Destination, --chown, --chmod; ADD local tar auto-extraction).

Rules, as docker's:
- a destination ending in `/`, or several sources, names a directory; one file
  copied to an existing directory goes inside it; a relative destination is
  relative to WORKDIR; missing parent directories are made (0755, owned like the
  files copied);
- a directory source copies its contents, not the directory itself;
- files keep their permission bits (or get `--chmod`) and modification times;
  owners are 0:0 unless `--chown` (names resolved in the image's /etc/passwd
  and /etc/group); symlinks are copied as links;
- every path in the rootfs is resolved with symlinks confined to the rootfs
  (`secure_join`), so an image's `/etc -> /host` link cannot send a copy out; a
  directory copied onto an image's symlink to a directory goes through the link
  (`/bin -> usr/bin` of a merged-/usr image stays a link); a file replaces a link;
- ADD of a local tar (plain, gzip, bzip2, xz) extracts it into the destination;
  members with `..` or absolute links out of the tree are refused.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.build.context import Entry
from corral.errors import InvalidArgument
from corral.linux.mounts import secure_join


@dataclass(frozen=True)
class Owner:
    uid: int = 0
    gid: int = 0


@dataclass
class CopyItem:
    """One source: its entries (relative to the destination), a directory or a file."""

    name: str
    is_dir: bool
    entries: list[Entry]
    data: bytes | None = None  # a here-document
    data_mode: int = 0o644


_SHIFT = {"u": 6, "g": 3, "o": 0}


class Chmod:
    """A `--chmod` value: octal (`755`) or chmod(1) symbolic clauses (`u=rwX,go=rX`,
    `+x`, `g=u`), applied to each copied file or directory's own mode."""

    _CLAUSE = re.compile(r"([ugoa]*)([-+=])([rwxXst]*|[ugo])")

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.octal: int | None = None
        self.clauses: list[tuple[str, str, str]] = []
        if text and all(c in "01234567" for c in text):
            self.octal = int(text, 8)
            if self.octal > 0o7777:
                raise InvalidArgument(f"{what} --chmod={text}: out of range")
            return
        for clause in text.split(","):
            match = self._CLAUSE.fullmatch(clause)
            if not match:
                raise InvalidArgument(f"{what} --chmod={text}: expected an octal mode or "
                                      "symbolic clauses like u=rwX,go=rX")
            who, op, perms = match.groups()
            self.clauses.append((who or "ugo", op, perms))

    def apply(self, mode: int, is_dir: bool) -> int:
        if self.octal is not None:
            return self.octal
        mode = stat.S_IMODE(mode)
        for who, op, perms in self.clauses:
            who = who.replace("a", "ugo")
            for cls in "ugo":
                if cls not in who:
                    continue
                shift = _SHIFT[cls]
                if perms in ("u", "g", "o"):
                    bits = (mode >> _SHIFT[perms]) & 7
                else:
                    bits = (4 if "r" in perms else 0) | (2 if "w" in perms else 0) | \
                        (1 if "x" in perms or ("X" in perms and (is_dir or mode & 0o111))
                         else 0)
                special = 0
                if "s" in perms and cls in "ug":
                    special |= stat.S_ISUID if cls == "u" else stat.S_ISGID
                if "t" in perms and cls == "o":
                    special |= stat.S_ISVTX
                value = (bits << shift) | special
                if op == "+":
                    mode |= value
                elif op == "-":
                    mode &= ~value
                else:
                    clear = (7 << shift) | {"u": stat.S_ISUID, "g": stat.S_ISGID,
                                            "o": stat.S_ISVTX}[cls]
                    mode = (mode & ~clear) | value
        return mode


def parse_chmod(text: str | None, what: str) -> Chmod | None:
    return None if text is None else Chmod(text, what)


def make_dirs(rootfs: str, rel: str, owner: Owner | None) -> str:
    """Make the directories of `rel` inside the rootfs; its real path."""
    path = secure_join(rootfs, rel)
    if os.path.isdir(path):
        return path
    parts = [p for p in rel.split("/") if p]
    current = ""
    for part in parts:
        current = f"{current}/{part}"
        real = secure_join(rootfs, current)
        if os.path.isdir(real):
            continue
        if os.path.lexists(real):
            raise InvalidArgument(f"cannot make directory {current}: a file is in the way")
        os.mkdir(real, 0o755)
        os.chmod(real, 0o755)
        if owner is not None:
            os.lchown(real, owner.uid, owner.gid)
    return secure_join(rootfs, rel)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _copy_data(src: Any, dst: Any, size: int) -> None:
    """Copy a file's bytes in the kernel (sendfile works across file systems, unlike
    copy_file_range from the context into an overlay); read/write if it cannot."""
    offset = 0
    try:
        while offset < size:
            sent = os.sendfile(dst.fileno(), src.fileno(), offset, min(size - offset, 1 << 30))
            if sent == 0:
                break
            offset += sent
    except OSError:
        pass
    if offset < size or size == 0:
        src.seek(offset)
        dst.seek(offset)
        shutil.copyfileobj(src, dst, 1 << 20)


def _place(entry: Entry, target: str, owner: Owner, chmod: Chmod | None) -> None:
    st = entry.st
    mode = st.st_mode
    perm = chmod.apply(mode, stat.S_ISDIR(mode)) if chmod is not None else stat.S_IMODE(mode)
    if stat.S_ISDIR(mode):
        if not os.path.isdir(target) or os.path.islink(target):
            _remove(target)
            os.mkdir(target, 0o700)
        os.chmod(target, perm)
        os.lchown(target, owner.uid, owner.gid)
        return
    if os.path.lexists(target):
        if os.path.isdir(target) and not os.path.islink(target):
            raise InvalidArgument(f"cannot replace directory {target} with a file")
        os.unlink(target)
    if stat.S_ISREG(mode):
        with open(entry.path, "rb") as src, \
                open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600), "wb") as dst:
            _copy_data(src, dst, st.st_size)
        os.chown(target, owner.uid, owner.gid)
        os.chmod(target, perm)
        os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns))
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(entry.path), target)
        os.lchown(target, owner.uid, owner.gid)
        os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(target, perm)
        os.chown(target, owner.uid, owner.gid)
    # sockets and devices are not copied (docker skips sockets; devices need mknod)


def copy_items(rootfs: Path, items: Sequence[CopyItem], dest: str, workdir: str,
               owner: Owner | None, chmod: Chmod | None) -> None:
    """Copy `items` to `dest` in `rootfs` (see the module docstring)."""
    root = str(rootfs)
    if not dest.startswith("/"):
        dest = (workdir.rstrip("/") or "") + "/" + dest
    dest_is_dir = dest.endswith("/") or len(items) > 1 or \
        os.path.isdir(secure_join(root, dest)) or any(i.is_dir for i in items)
    effective = owner or Owner()
    if dest_is_dir:
        base_rel = dest.rstrip("/") or "/"
        base = make_dirs(root, base_rel, owner)
        for item in items:
            if item.data is not None:
                # the name itself is not followed: a link there is replaced, not written through
                _write_data(os.path.join(base, item.name), item, effective, chmod)
                continue
            dirs: list[tuple[str, Entry]] = []
            for entry in item.entries:
                rel = base_rel.rstrip("/") + "/" + entry.rel
                parent = os.path.dirname(rel)
                secure_parent = secure_join(root, parent)
                if not os.path.isdir(secure_parent):
                    make_dirs(root, parent, owner)
                    secure_parent = secure_join(root, parent)
                target = os.path.join(secure_parent, os.path.basename(rel))
                if stat.S_ISDIR(entry.st.st_mode) and os.path.islink(target) and \
                        os.path.isdir(secure_join(root, rel)):
                    continue  # an image's link to a directory (/bin -> usr/bin) is followed
                _place(entry, target, effective, chmod)
                if stat.S_ISDIR(entry.st.st_mode):
                    dirs.append((target, entry))
            for target, entry in reversed(dirs):  # directory times after their contents
                os.utime(target, ns=(entry.st.st_mtime_ns, entry.st.st_mtime_ns))
        return
    item = items[0]
    parent_rel = os.path.dirname(dest.rstrip("/")) or "/"
    parent = make_dirs(root, parent_rel, owner)
    target = os.path.join(parent, os.path.basename(dest.rstrip("/")))
    if item.data is not None:
        _write_data(target, item, effective, chmod)
    else:
        _place(item.entries[0], target, effective, chmod)


def _write_data(target: str, item: CopyItem, owner: Owner, chmod: Chmod | None) -> None:
    if os.path.lexists(target):
        _remove(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(fd, "wb") as f:
        f.write(item.data or b"")
    os.chown(target, owner.uid, owner.gid)
    os.chmod(target, chmod.apply(item.data_mode, False) if chmod is not None
             else item.data_mode)


def is_archive(path: str) -> bool:
    """A tar ADD extracts: plain tar, or gzip/bzip2/xz compressed (by content)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        try:
            with tarfile.open(path, "r:*") as tar:
                return tar.next() is not None
        except (tarfile.TarError, OSError, EOFError):
            return False
    return len(head) == 512 and head[257:262] == b"ustar"


def extract_archive(path: str, rootfs: Path, dest: str, workdir: str,
                    owner: Owner | None) -> None:
    """Extract a local tar into `dest` (a directory) inside `rootfs`."""
    root = str(rootfs)
    if not dest.startswith("/"):
        dest = (workdir.rstrip("/") or "") + "/" + dest
    base_rel = dest.rstrip("/") or "/"
    make_dirs(root, base_rel, owner)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            name = member.name.lstrip("/")
            parts = [p for p in name.split("/") if p and p != "."]
            if not parts:
                continue
            if ".." in parts:
                raise InvalidArgument(f"ADD {os.path.basename(path)}: member {member.name!r} "
                                      "leaves the destination")
            rel = base_rel.rstrip("/") + "/" + "/".join(parts)
            parent_rel = os.path.dirname(rel)
            make_dirs(root, parent_rel, owner)
            target = os.path.join(secure_join(root, parent_rel), parts[-1])
            uid = owner.uid if owner else member.uid
            gid = owner.gid if owner else member.gid
            if member.isdir():
                if os.path.islink(target) and os.path.isdir(secure_join(root, rel)):
                    continue  # an image's link to a directory is followed
                if not os.path.isdir(target) or os.path.islink(target):
                    _remove(target)
                    os.mkdir(target, 0o700)
                dirs.append((target, member))
                os.lchown(target, uid, gid)
                continue
            if os.path.lexists(target):
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)
            if member.isreg():
                src = tar.extractfile(member)
                assert src is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with open(fd, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            elif member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                link_parts = [p for p in member.linkname.lstrip("/").split("/")
                              if p and p != "."]
                if ".." in link_parts:
                    raise InvalidArgument(f"ADD: hard link {member.name!r} -> "
                                          f"{member.linkname!r} leaves the destination")
                source = secure_join(root, base_rel.rstrip("/") + "/" + "/".join(link_parts))
                os.link(source, target)
                continue
            elif member.isfifo():
                os.mkfifo(target, 0o600)
            else:
                continue  # devices are not made by ADD here
            os.lchown(target, uid, gid)
            if not member.issym():
                os.chmod(target, stat.S_IMODE(member.mode))
            os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
    for target, member in reversed(dirs):
        os.chmod(target, stat.S_IMODE(member.mode))
        os.utime(target, (member.mtime, member.mtime))


__all__ = ["Chmod", "CopyItem", "Owner", "copy_items", "extract_archive", "is_archive", "make_dirs",
           "parse_chmod"]
