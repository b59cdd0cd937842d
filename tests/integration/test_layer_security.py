"""Layer apply/diff as root: ownership, device nodes, capabilities, overlay
whiteouts and opaque dirs, and diff_layer of a real overlayfs upper.

Runs as root (the integration suite's `root` marker): mknod, chown and
trusted.* xattrs need it.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from tests.unit.test_layer_tar import (
    HOSTILE,
    base_layer,
    make_tar,
    sentinel_state,
    snapshot,
)

from corral.image.layer_tar import HostileLayer, apply_layer, diff_dirs, diff_layer

CAP_NET_BIND = bytes.fromhex("0100000200040000000000000000000000000000")  # v2, net_bind_service


def tar_with(*infos: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = 1_600_000_000
    for key, value in kw.items():
        setattr(ti, key, value)
    return ti


def apply(data: bytes, target: Path, whiteouts: str = "overlay"):  # type: ignore[no-untyped-def]
    return apply_layer(io.BytesIO(data), target, whiteouts=whiteouts)  # type: ignore[arg-type]


def test_ownership_devices_capabilities(tmp_path: Path) -> None:
    data = tar_with(
        (info("home/", tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1000, uname="nobody"), None),
        (info("home/f", uid=1000, gid=1001, mode=0o4750, size=2, uname="root", gname="root"), b"hi"),
        (info("home/l", tarfile.SYMTYPE, linkname="f", uid=1002, gid=1003), None),
        (info("dev/", tarfile.DIRTYPE, mode=0o755), None),
        (info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), None),
        (info("dev/loop9", tarfile.BLKTYPE, devmajor=7, devminor=9, mode=0o660, gid=6), None),
        (info("ping", mode=0o755, size=1,
              pax_headers={"SCHILY.xattr.security.capability": CAP_NET_BIND.decode("latin-1")}), b"p"),
        (info("var/mail/", tarfile.DIRTYPE, mode=0o2775, gid=8), None),
        (info("var/mail/root", mode=0o600, size=0), None),
    )
    # tarfile writes pax values as UTF-8: patch the capability bytes back to raw
    data = data.replace(CAP_NET_BIND.decode("latin-1").encode("utf-8"), CAP_NET_BIND)
    apply(data, tmp_path)
    st = os.stat(tmp_path / "home/f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o4750)
    st = os.lstat(tmp_path / "home/l")
    assert (st.st_uid, st.st_gid) == (1002, 1003)
    st = os.stat(tmp_path / "home")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o750)
    st = os.lstat(tmp_path / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(tmp_path / "dev/loop9")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 9) and st.st_gid == 6
    try:
        assert os.getxattr(tmp_path / "ping", "security.capability") == CAP_NET_BIND
    except OSError as err:
        pytest.skip(f"no security xattrs here: {err}")
    # a file in a setgid directory still gets the layer's group, not the directory's
    assert os.stat(tmp_path / "var/mail/root").st_gid == 0


def test_overlay_whiteouts_and_opaque(tmp_path: Path) -> None:
    data = make_tar(("etc/", "dir"), ("etc/.wh.gone", "file"), ("opq/", "dir"),
                    ("opq/.wh..wh..opq", "file"), ("opq/new", "file", "n"),
                    ("x", "file", "mine"), (".wh.x", "file"),
                    ("evil", "file", "x", {"pax": {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}}))
    apply(data, tmp_path, "overlay")
    st = os.lstat(tmp_path / "etc/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(tmp_path / "opq", "trusted.overlay.opaque") == b"y"
    assert (tmp_path / "x").read_text() == "mine"  # whiteouts hide lower layers only
    assert "trusted.overlay.redirect" not in os.listxattr(tmp_path / "evil")


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_refused_overlay(tmp_path: Path, case: str) -> None:
    target, sentinel = tmp_path / "target", tmp_path / "sentinel"
    target.mkdir()
    sentinel.mkdir()
    (sentinel / "file").write_text("precious\n")
    (sentinel / "sub").mkdir()
    before = sentinel_state(sentinel)
    entries = []
    for name, kind, *rest in HOSTILE[case]:
        name = name.replace("/{sentinel}", str(sentinel)).replace("{sentinel}", str(sentinel))
        rest = [r.replace("{sentinel}", str(sentinel)) if isinstance(r, str) else r for r in rest]
        entries.append((name, kind, *rest))
    with pytest.raises(HostileLayer):
        apply(make_tar(*entries), target, "overlay")
    assert sentinel_state(sentinel) == before
    assert not (tmp_path / "evil").exists()


def test_device_over_sentinel_symlink_is_not_followed(tmp_path: Path) -> None:
    target, sentinel = tmp_path / "target", tmp_path / "sentinel"
    target.mkdir()
    sentinel.mkdir()
    (sentinel / "file").write_text("precious\n")
    data = tar_with(
        (info("s", tarfile.SYMTYPE, linkname=str(sentinel / "file")), None),
        (info("s", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666, uid=1234), None),
    )
    apply(data, target)
    assert stat.S_ISCHR(os.lstat(target / "s").st_mode)
    st = os.stat(sentinel / "file")
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0
    assert (sentinel / "file").read_text() == "precious\n"


def overlay_mount(lower: Path, upper: Path, work: Path, merged: Path) -> None:
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    for extra in (",redirect_dir=off,metacopy=off", ""):
        result = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts + extra, merged],
                                check=False, capture_output=True, text=True)
        if result.returncode == 0:
            return
    pytest.skip(f"cannot mount overlayfs here: {result.stderr.strip()}")


def test_diff_layer_of_overlay_upper_round_trips(tmp_path: Path) -> None:
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    apply(base_layer(), lower, "overlay")
    overlay_mount(lower, upper, work, merged)
    try:
        (merged / "etc/gone").unlink()
        shutil.rmtree(merged / "etc/opq")
        (merged / "etc/opq").mkdir()  # overlay makes it opaque
        (merged / "etc/opq/fresh").write_text("fresh")
        (merged / "etc/passwd").write_text("changed\n")
        os.chown(merged / "etc/passwd", 5, 6)
        (merged / "var/dir/y").write_text("y")
        os.mknod(merged / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        expected = snapshot(merged)
    finally:
        subprocess.run(["umount", merged], check=True)
    assert os.getxattr(upper / "etc/opq", "trusted.overlay.opaque") == b"y"
    out = io.BytesIO()
    applied = diff_layer([lower], upper, out)
    data = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = tf.getnames()
    assert "etc/.wh.gone" in names and "etc/opq/.wh..wh..opq" in names
    assert names.index("etc/opq") < names.index("etc/opq/.wh..wh..opq") < names.index(
        "etc/opq/fresh")
    # the layer applied on a copy of the lower (vfs form) equals the merged view
    copy = tmp_path / "copy"
    copy.mkdir()
    apply(base_layer(), copy, "vfs")
    assert apply(data, copy, "vfs") == applied
    got = snapshot(copy)
    assert {k: v for k, v in got.items() if k != "."} == {
        k: v for k, v in expected.items() if k != "."}
    # and the overlay form of the same layer mounts to the same view
    layer2 = tmp_path / "layer2"
    layer2.mkdir()
    apply(data, layer2, "overlay")
    ro = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                         f"lowerdir={layer2}:{lower}", merged], check=False,
                        capture_output=True, text=True)
    assert ro.returncode == 0, ro.stderr
    try:
        view = snapshot(merged)
    finally:
        subprocess.run(["umount", merged], check=True)
    assert {k: v for k, v in view.items() if k != "."} == {
        k: v for k, v in expected.items() if k != "."}


def test_diff_dirs_keeps_ownership_and_devices(tmp_path: Path) -> None:
    old, new, again = tmp_path / "old", tmp_path / "new", tmp_path / "again"
    for d in (old, new, again):
        d.mkdir()
        apply(base_layer(), d, "vfs")
    os.chown(new / "etc/passwd", 1000, 1000)
    os.mknod(new / "etc/tty", stat.S_IFCHR | 0o620, os.makedev(5, 0))
    out = io.BytesIO()
    diff_dirs(old, new, out)
    apply(out.getvalue(), again, "vfs")
    assert snapshot(again) == snapshot(new)
