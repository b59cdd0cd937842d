"""Layer apply/diff (corral.image.layer_tar): sniffing, attributes, whiteouts,
hostile layers refused with nothing written outside, diff round-trips.

Runs without root: whiteouts use the vfs form, ownership is not applied.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from corral.errors import InvalidArgument
from corral.image.compression import sniff
from corral.image.layer_tar import (
    AppliedLayer,
    HostileLayer,
    LayerError,
    apply_layer,
    diff_dirs,
    open_layer,
)

MTIME = 1_600_000_000


def make_tar(*entries: tuple, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """entries: (name, kind, extra) with kind in file/dir/sym/link/fifo; extra = data or link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for entry in entries:
            name, kind, *rest = entry
            extra = rest[0] if rest else b""
            opts = rest[1] if len(rest) > 1 else {}
            info = tarfile.TarInfo(name)
            info.mtime = opts.get("mtime", MTIME)
            info.mode = opts.get("mode", 0o755 if kind == "dir" else 0o644)
            info.pax_headers = opts.get("pax", {})
            data = None
            if kind == "file":
                data = extra if isinstance(extra, bytes) else extra.encode()
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = extra
            elif kind == "link":
                info.type = tarfile.LNKTYPE
                info.linkname = extra
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything a layer can set, per path (dir mtimes included)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames + ([""] if dirpath == str(root) else []):
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            try:
                xattrs = sorted(
                    (k, os.getxattr(path, k, follow_symlinks=False))
                    for k in os.listxattr(path, follow_symlinks=False)
                    if not k.startswith("trusted.overlay.")
                )
            except OSError:
                xattrs = []
            out[rel] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                int(st.st_mtime) if rel != "." else None,
                content,
                st.st_rdev,
                tuple(xattrs),
            )
    return out


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(target, sentinel): sentinel sits next to target and must never change."""
    target = tmp_path / "target"
    target.mkdir()
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "file").write_text("precious\n")
    (sentinel / "sub").mkdir()
    return target, sentinel


def sentinel_state(sentinel: Path) -> dict[str, tuple]:
    state = snapshot(sentinel)
    st = os.stat(sentinel / "file")
    state["nlink"] = (st.st_nlink,)
    return state


def apply_bytes(data: bytes, target: Path, whiteouts: str = "vfs") -> AppliedLayer:
    return apply_layer(io.BytesIO(data), target, whiteouts=whiteouts)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Sniffing and diff ids


def test_sniff_magic() -> None:
    assert sniff(b"\x1f\x8b\x08\x00") == "gzip"
    assert sniff(b"\x28\xb5\x2f\xfd") == "zstd"
    assert sniff(b"etc/") == "tar"
    assert sniff(b"") == "tar"


@pytest.mark.parametrize("compression", ["tar", "gzip", "zstd"])
def test_diff_id_is_sha256_of_uncompressed_tar(tmp_path: Path, compression: str) -> None:
    import zstandard

    tar = make_tar(("etc/", "dir"), ("etc/hostname", "file", "corral\n"), ("bin", "sym", "usr/bin"))
    blob = {
        "tar": tar,
        "gzip": gzip.compress(tar),
        "zstd": zstandard.ZstdCompressor().compress(tar),
    }[compression]
    assert open_layer(io.BytesIO(blob)).read() == tar
    target = tmp_path / "t"
    target.mkdir()
    applied = apply_bytes(blob, target)
    assert applied == AppliedLayer("sha256:" + hashlib.sha256(tar).hexdigest(), len(tar))
    assert (target / "etc/hostname").read_text() == "corral\n"
    assert os.readlink(target / "bin") == "usr/bin"


def test_diff_id_covers_bytes_after_end_of_archive(tmp_path: Path) -> None:
    tar = make_tar(("a", "file", "x")) + bytes(4096)
    assert apply_bytes(tar, tmp_path).diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_multi_member_gzip(tmp_path: Path) -> None:
    tar = make_tar(("a", "file", "x" * 100000))
    blob = gzip.compress(tar[:5000]) + gzip.compress(tar[5000:])
    assert apply_bytes(blob, tmp_path).diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_bad_whiteouts_mode(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(b""), tmp_path, whiteouts="aufs")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Attributes


def test_modes_mtimes_links_fifos_xattrs(tmp_path: Path) -> None:
    tar = make_tar(
        ("./", "dir", b"", {"mode": 0o755, "mtime": 1000}),
        ("tmp/", "dir", b"", {"mode": 0o1777, "mtime": 2000}),
        ("usr/", "dir", b"", {"mtime": 3000}),
        ("usr/bin/", "dir", b"", {"mtime": 4000}),
        ("usr/bin/su", "file", b"su", {"mode": 0o4755, "mtime": 5000}),
        ("usr/bin/wall", "file", b"w", {"mode": 0o2555}),
        ("usr/bin/ro", "file", b"r", {"mode": 0o400}),
        ("usr/bin/sh", "sym", "dash", {"mtime": 6000}),
        ("usr/bin/su2", "link", "usr/bin/su"),
        ("usr/bin/fifo", "fifo", b"", {"mode": 0o600}),
        ("usr/bin/x", "file", b"x", {"pax": {"SCHILY.xattr.user.corral": "yes"}}),
    )
    apply_bytes(tar, tmp_path)
    st = os.stat(tmp_path / "usr/bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_mtime == 5000
    assert stat.S_IMODE(os.stat(tmp_path / "usr/bin/wall").st_mode) == 0o2555
    assert stat.S_IMODE(os.stat(tmp_path / "usr/bin/ro").st_mode) == 0o400
    assert stat.S_IMODE(os.stat(tmp_path / "tmp").st_mode) == 0o1777
    # directory mtimes survive the files written into them afterwards
    assert os.stat(tmp_path / "usr/bin").st_mtime == 4000
    assert os.stat(tmp_path / "usr").st_mtime == 3000
    assert os.stat(tmp_path).st_mtime == 1000
    assert os.readlink(tmp_path / "usr/bin/sh") == "dash"
    assert os.lstat(tmp_path / "usr/bin/sh").st_mtime == 6000
    assert os.stat(tmp_path / "usr/bin/su2").st_ino == st.st_ino
    assert stat.S_ISFIFO(os.stat(tmp_path / "usr/bin/fifo").st_mode)
    try:
        assert os.getxattr(tmp_path / "usr/bin/x", "user.corral") == b"yes"
    except OSError:
        pytest.skip("no user xattrs on the test filesystem")


def test_gnu_and_pax_long_names(tmp_path: Path) -> None:
    deep = "/".join(["d" * 60] * 5)
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        name = deep + "/f" if fmt != tarfile.USTAR_FORMAT else "d" * 120 + "/f"
        target = tmp_path / str(fmt)
        target.mkdir()
        link = "l" * (150 if fmt != tarfile.USTAR_FORMAT else 90)
        apply_bytes(make_tar((name, "file", "x"), (name + "l", "sym", link), fmt=fmt), target)
        assert (target / name).read_text() == "x"
        assert os.readlink(target / (name + "l")) == link


def test_existing_entries_are_replaced_not_written_through(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/old").write_text("old")
    (tmp_path / "f").write_text("f")
    tar = make_tar(("d", "file", "now a file"), ("f/", "dir"), ("f/x", "file", "x"))
    apply_bytes(tar, tmp_path)
    assert (tmp_path / "d").read_text() == "now a file"
    assert (tmp_path / "f/x").read_text() == "x"


def test_in_layer_symlink_parent_is_followed(tmp_path: Path) -> None:
    tar = make_tar(("usr/lib/", "dir"), ("lib", "sym", "usr/lib"), ("lib/libc.so", "file", "c"),
                   ("usr/x/y", "sym", "../lib"), ("usr/x/y/z", "file", "z"))
    apply_bytes(tar, tmp_path)
    assert (tmp_path / "usr/lib/libc.so").read_text() == "c"
    assert (tmp_path / "usr/lib/z").read_text() == "z"
    assert os.path.islink(tmp_path / "lib")


def test_sparse_gnu_tar(tmp_path: Path) -> None:
    gnutar = shutil.which("tar")
    if gnutar is None:
        pytest.skip("GNU tar not installed")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(10 << 20)
        f.write(b"tail")
    out = {}
    for fmt in ("gnu", "posix"):
        tar = subprocess.run([gnutar, "--sparse", f"--format={fmt}", "-C", src, "-cf", "-", "."],
                             check=True, capture_output=True).stdout
        target = tmp_path / fmt
        target.mkdir()
        apply_bytes(tar, target)
        out[fmt] = (target / "sparse").read_bytes()
    for data in out.values():
        assert data == (src / "sparse").read_bytes()


# ---------------------------------------------------------------------------
# Whiteouts (vfs form)


def test_vfs_whiteouts_remove_lower_paths(tmp_path: Path) -> None:
    apply_bytes(make_tar(("etc/", "dir"), ("etc/a", "file", "a"), ("etc/b/", "dir"),
                         ("etc/b/c", "file", "c"), ("keep", "file", "k")), tmp_path)
    apply_bytes(make_tar(("etc/.wh.a", "file"), ("etc/.wh.b", "file"),
                         ("etc/.wh..wh.plnk", "file")), tmp_path)
    assert sorted(os.listdir(tmp_path / "etc")) == []
    assert (tmp_path / "keep").exists()


@pytest.mark.parametrize("opaque_first", [True, False])
def test_vfs_opaque_hides_lower_only(tmp_path: Path, opaque_first: bool) -> None:
    apply_bytes(make_tar(("a/", "dir"), ("a/b/", "dir"), ("a/b/c/", "dir"),
                         ("a/b/c/bar", "file", "lower"), ("a/old", "file")), tmp_path)
    entries = [("a/", "dir"), ("a/b/", "dir"), ("a/b/c/", "dir"), ("a/b/c/foo", "file", "new")]
    opq = ("a/.wh..wh..opq", "file")
    apply_bytes(make_tar(*([opq] + entries if opaque_first else entries + [opq])), tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "a", "a/b", "a/b/c", "a/b/c/foo"]


def test_whiteout_of_same_layer_entry_is_ignored(tmp_path: Path) -> None:
    apply_bytes(make_tar(("x", "file", "mine"), (".wh.x", "file")), tmp_path)
    assert (tmp_path / "x").read_text() == "mine"


def test_whiteout_without_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match=r"\.wh\."):
        apply_bytes(make_tar(("d/.wh.", "file")), tmp_path)


# ---------------------------------------------------------------------------
# Hostile layers: refused, naming the entry, nothing outside written


HOSTILE = {
    "dotdot": [("../sentinel/evil", "file", "x")],
    "dotdot-inner": [("a/../../sentinel/evil", "file", "x")],
    # Absolute names are refused (issue 4), not stripped like docker/containerd do.
    "absolute": [("/{sentinel}/evil", "file", "x")],
    "symlink-up-then-write": [("a", "sym", "../../.."), ("a/evil", "file", "x")],
    "symlink-to-sibling-then-write": [("a", "sym", "../sentinel"), ("a/evil", "file", "x")],
    "symlink-to-root-then-write": [("a", "sym", "/"), ("a/{sentinel}/evil", "file", "x")],
    "symlink-absolute-then-write": [("a", "sym", "{sentinel}"), ("a/evil", "file", "x")],
    "symlink-chain": [("b", "sym", "../sentinel"), ("a", "sym", "b"), ("a/evil", "file", "x")],
    "symlink-nested-up": [("d/e/", "dir"), ("d/e/l", "sym", "../../../sentinel"),
                          ("d/e/l/evil", "file", "x")],
    "symlink-then-dir": [("a", "sym", "../sentinel"), ("a/sub/", "dir")],
    "symlink-then-overwrite": [("a", "sym", "../sentinel"), ("a/file", "file", "pwned")],
    "hardlink-dotdot": [("h", "link", "../sentinel/file")],
    "hardlink-absolute": [("h", "link", "{sentinel}/file")],
    "hardlink-through-symlink": [("d", "sym", "../sentinel"), ("h", "link", "d/file")],
    "hardlink-to-escaping-symlink": [("s", "sym", "../sentinel/file"), ("h", "link", "s")],
    "hardlink-to-absolute-symlink": [("s", "sym", "{sentinel}/file"), ("h", "link", "s")],
    "whiteout-dotdot": [(".wh...", "file")],
    "whiteout-dotdot-inner": [("x/.wh...", "file")],
    "whiteout-through-symlink": [("d", "sym", "../sentinel"), ("d/.wh.file", "file")],
    "opaque-through-symlink": [("d", "sym", "../sentinel"), ("d/.wh..wh..opq", "file")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("compression", ["tar", "gzip"])
def test_hostile_layer_refused(dirs: tuple[Path, Path], case: str, compression: str) -> None:
    target, sentinel = dirs
    before = sentinel_state(sentinel)
    entries = []
    for name, kind, *rest in HOSTILE[case]:
        name = name.replace("/{sentinel}", str(sentinel)).replace("{sentinel}", str(sentinel))
        rest = [r.replace("{sentinel}", str(sentinel)) if isinstance(r, str) else r for r in rest]
        entries.append((name, kind, *rest))
    tar = make_tar(*entries)
    blob = gzip.compress(tar) if compression == "gzip" else tar
    with pytest.raises(HostileLayer) as info:
        apply_bytes(blob, target)
    assert isinstance(info.value, InvalidArgument)
    assert entries[-1][0].lstrip("/").split("/")[-1] in str(info.value)
    assert sentinel_state(sentinel) == before
    assert not (sentinel / "evil").exists()
    assert not (sentinel.parent / "evil").exists()


def test_symlink_leaf_is_replaced_not_followed(dirs: tuple[Path, Path]) -> None:
    target, sentinel = dirs
    before = sentinel_state(sentinel)
    apply_bytes(make_tar(("s", "sym", "../sentinel/file"), ("s", "file", "mine"),
                         ("t", "sym", "../sentinel"), ("t/", "dir", b"", {"mode": 0o700})), target)
    assert (target / "s").read_text() == "mine" and not os.path.islink(target / "s")
    assert (target / "t").is_dir() and not os.path.islink(target / "t")
    assert sentinel_state(sentinel) == before


def test_symlink_entries_pointing_out_are_fine_if_not_written_through(
    dirs: tuple[Path, Path],
) -> None:
    target, _sentinel = dirs
    apply_bytes(make_tar(("etc/", "dir"), ("etc/mtab", "sym", "/proc/self/mounts"),
                         ("up", "sym", "../../..")), target)
    assert os.readlink(target / "etc/mtab") == "/proc/self/mounts"


# ---------------------------------------------------------------------------
# Malformed


def test_truncated_and_corrupt(tmp_path: Path) -> None:
    tar = make_tar(("a", "file", "x" * 5000))
    with pytest.raises(LayerError, match="truncated"):
        apply_bytes(tar[:1500], tmp_path)
    bad = bytearray(tar)
    bad[0] ^= 0xFF
    with pytest.raises(LayerError, match="checksum"):
        apply_bytes(bytes(bad), tmp_path)
    with pytest.raises(LayerError):
        apply_bytes(gzip.compress(tar)[:-40], tmp_path)


# ---------------------------------------------------------------------------
# diff_dirs round trips


def base_layer() -> bytes:
    return make_tar(
        ("etc/", "dir"), ("etc/passwd", "file", "root:x:0:0\n"), ("etc/gone", "file", "g"),
        ("etc/opq/", "dir"), ("etc/opq/a", "file", "a"), ("usr/", "dir"), ("usr/bin/", "dir"),
        ("usr/bin/tool", "file", "t", {"mode": 0o4755}), ("usr/bin/alias", "link", "usr/bin/tool"),
        ("bin", "sym", "usr/bin"), ("var/", "dir"), ("var/dir/", "dir"), ("var/dir/x", "file", "x"),
    )


def test_diff_dirs_round_trip(tmp_path: Path) -> None:
    old, new, again = tmp_path / "old", tmp_path / "new", tmp_path / "again"
    for d in (old, new, again):
        d.mkdir()
        apply_bytes(base_layer(), d)
    # changes in `new`
    (new / "etc/passwd").write_text("root:x:0:0\ncorral:x:1000:1000\n")
    os.utime(new / "etc/passwd", (MTIME + 5, MTIME + 5))
    (new / "etc/gone").unlink()
    shutil.rmtree(new / "var/dir")
    (new / "var/dir").write_text("a file where a dir was")
    (new / "usr/bin/tool").chmod(0o755)
    (new / "etc/new.d").mkdir()
    (new / "etc/new.d/conf").write_text("c")
    os.link(new / "etc/new.d/conf", new / "etc/new.d/conf2")
    os.symlink("passwd", new / "etc/pw")
    os.mkfifo(new / "etc/fifo")
    out = io.BytesIO()
    applied = diff_dirs(old, new, out)
    data = out.getvalue()
    assert applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert applied.size == len(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = {m.name: m for m in tf}
    names = list(members)
    assert "etc/.wh.gone" in names and "etc/passwd" in names
    assert "etc/opq" not in names and "var/dir" in names  # unchanged / type changed
    # tool's inode changed mode, so its other name changed too: written as a hard link
    assert members["usr/bin/alias"].isreg()  # sorted first
    assert members["usr/bin/tool"].islnk() and members["usr/bin/tool"].linkname == "usr/bin/alias"
    assert names.index("etc") < names.index("etc/.wh.gone") < names.index("etc/new.d")
    apply_bytes(data, again)
    assert snapshot(again) == snapshot(new)
    assert os.stat(again / "etc/new.d/conf").st_ino == os.stat(again / "etc/new.d/conf2").st_ino
    # deterministic
    out2 = io.BytesIO()
    assert diff_dirs(old, new, out2) == applied and out2.getvalue() == data


def test_full_tree_round_trip(tmp_path: Path) -> None:
    empty, a, b = tmp_path / "empty", tmp_path / "a", tmp_path / "b"
    for d in (empty, a, b):
        d.mkdir()
    apply_bytes(base_layer(), a)
    out = io.BytesIO()
    diff_dirs(empty, a, out)
    apply_bytes(out.getvalue(), b)
    assert snapshot(a) | {".": None} == snapshot(b) | {".": None}
