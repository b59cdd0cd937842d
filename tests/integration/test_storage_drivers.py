"""The shared driver suite: every storage driver (overlay, vfs) must pass these.

Layers are applied from tars (whiteouts in each driver's form), stacked, mounted as a
container rootfs with the whiteouts in effect, written to, and diffed back to a tar.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from tests.integration.storage_support import layer_tar, tar_names, temp_store

from corral.storage import (
    ContainerNotFound,
    ImageInUse,
    LayerInUse,
    LayerMismatch,
    LayerNotFound,
    Store,
)
from corral.storage.drivers import overlay_support
from corral.storage.mount import is_mountpoint, mounts_under

pytest.importorskip("corral.image.layer_tar", reason="needs corral.image.layer_tar (apply_layer)")


def _has_diff() -> bool:
    try:
        import corral.image.layer_diff  # noqa: F401
    except ImportError:
        return False
    return True


needs_diff = pytest.mark.skipif(not _has_diff(), reason="needs corral.image.layer_diff (diff_layer)")

BASE = layer_tar([
    ("etc", "dir"), ("etc/hostname", "file", b"base\n"), ("etc/gone", "file", b"x"),
    ("opt", "dir"), ("opt/old", "file", b"old"), ("bin", "dir"),
    ("bin/tool", "file", b"#!tool"), ("bin/alias", "symlink", "tool"),
    ("bin/hard", "hardlink", "bin/tool"), ("keep", "dir"), ("keep/a", "file", b"a"),
])
TOP = layer_tar([
    ("etc", "dir"), ("etc/gone", "whiteout"), ("etc/new", "file", b"new"),
    ("opt", "dir"), ("opt", "opaque"), ("opt/fresh", "file", b"fresh"),
])


@pytest.fixture(params=["overlay", "vfs"])
def store(request):
    if request.param == "overlay":
        import tempfile

        reason = overlay_support(Path(tempfile.gettempdir()))
        if reason:
            pytest.skip(f"overlay unusable here: {reason}")
    with temp_store(request.param) as opened:
        assert opened.driver.name == request.param
        yield opened
    assert not mounts_under(opened.root)


def _image(store: Store, *tars: bytes, name: str = "example.com/test:1"):
    parent = None
    for data in tars:
        parent = store.put_layer(io.BytesIO(data), parent).id
    image_id = "sha256:" + os.urandom(32).hex()
    return store.create_image(image_id, parent, names=[name])


@needs_diff
def test_layers_stack_and_mount_with_whiteouts(store):
    image = _image(store, BASE, TOP)
    chain = store.layers.chain(image.top_layer)
    assert [r.parent for r in chain] == [None, chain[0].id]
    assert all(r.users == (image.user,) for r in chain)
    container = store.create_container("example.com/test:1", names=["c1"])
    rootfs = store.mount("c1")
    try:
        assert is_mountpoint(rootfs)
        assert (rootfs / "etc/hostname").read_text() == "base\n"
        assert (rootfs / "etc/new").read_text() == "new"
        assert not (rootfs / "etc/gone").exists()           # whiteout
        assert sorted(os.listdir(rootfs / "opt")) == ["fresh"]  # opaque directory
        assert os.readlink(rootfs / "bin/alias") == "tool"
        assert os.stat(rootfs / "bin/hard").st_ino == os.stat(rootfs / "bin/tool").st_ino
        assert not any(".wh." in name for _, dirs, files in os.walk(rootfs)
                       for name in dirs + files)
        (rootfs / "etc/hostname").write_text("changed\n")
        (rootfs / "added").write_bytes(b"added")
        os.unlink(rootfs / "keep/a")
        os.mkdir(rootfs / "newdir")
    finally:
        store.unmount(container.id)
    assert not is_mountpoint(rootfs)
    out = io.BytesIO()
    store.diff("c1", out)
    names = tar_names(out.getvalue())
    assert {"etc/hostname", "added", "keep/.wh.a", "newdir"} <= set(names)
    assert "etc/new" not in names and "bin/tool" not in names
    # the diff applies as a new layer on the image: same content as the container
    layer = store.put_layer(io.BytesIO(out.getvalue()), image.top_layer)
    committed = store.create_image("sha256:" + "c" * 64, layer.id, names=["committed:1"])
    c2 = store.create_container("committed:1")
    rootfs2 = store.mount(c2.id)
    try:
        assert (rootfs2 / "etc/hostname").read_text() == "changed\n"
        assert (rootfs2 / "added").read_bytes() == b"added"
        assert not (rootfs2 / "keep/a").exists()
        assert (rootfs2 / "newdir").is_dir()
    finally:
        store.unmount(c2.id)
    assert committed.top_layer == layer.id


@needs_diff
def test_layer_diff_reproduces_the_layer(store):
    image = _image(store, BASE, TOP)
    out = io.BytesIO()
    store.layer_diff(image.top_layer, out)
    names = tar_names(out.getvalue())
    assert {"etc/.wh.gone", "etc/new", "opt/fresh"} <= set(names)
    assert "opt/.wh..wh..opq" in names or "opt/.wh.old" in names
    assert "etc/hostname" not in names


def test_same_layer_twice_is_shared(store):
    first = store.put_layer(io.BytesIO(BASE))
    again = store.put_layer(io.BytesIO(BASE))
    known = store.put_layer(io.BytesIO(b"not read"), diff_id=first.diff_id)
    assert first.id == again.id == known.id
    layer_dirs = [p for p in (store.home / "layers").iterdir()]
    assert [p.name for p in layer_dirs] == [first.hex]
    assert len(store.layers.all()) == 1


def test_wrong_diff_id_leaves_nothing(store):
    with pytest.raises(LayerMismatch, match="expected sha256:0000"):
        store.put_layer(io.BytesIO(BASE), diff_id="sha256:" + "0" * 64)
    assert list((store.home / "layers").iterdir()) == []
    assert store.layers.all() == []


def test_missing_parent_is_named(store):
    with pytest.raises(LayerNotFound, match="sha256:1111"):
        store.put_layer(io.BytesIO(BASE), "sha256:" + "1" * 64)


def test_shared_layers_live_while_an_image_uses_them(store):
    one = _image(store, BASE, TOP, name="one:1")
    two = _image(store, BASE, name="two:1")
    base = store.layers.chain(one.top_layer)[0]
    assert set(store.layer(base.id).users) == {one.user, two.user}
    with pytest.raises(LayerInUse, match=base.id):
        store.layers.remove(base.id)
    _, removed = store.remove_image("one:1")
    assert removed == [one.top_layer]
    assert store.layer(base.id).users == (two.user,)
    _, removed = store.remove_image(two.id[7:19])
    assert removed == [base.id]
    assert store.layers.all() == [] and list((store.home / "layers").iterdir()) == []


def test_image_in_use_by_container(store):
    image = _image(store, BASE)
    container = store.create_container(image.id)
    with pytest.raises(ImageInUse, match=image.short_id):
        store.remove_image(image.id)
    store.mount(container.id)
    store.remove_image(image.id, force=True)  # removes (and unmounts) the container
    with pytest.raises(ContainerNotFound):
        store.container(container.id)
    assert store.layers.all() == []


def test_mounts_are_counted_and_idempotent(store):
    _image(store, BASE)
    container = store.create_container("example.com/test:1")
    first = store.mount(container.id)
    assert store.mount(container.id) == first
    assert len([p for p in mounts_under(store.root)]) == 1
    assert store.unmount(container.id) is True and is_mountpoint(first)
    assert store.unmount(container.id) is False and not is_mountpoint(first)
    store.mount(container.id)
    store.remove_container(container.id)  # unmounts, drops the refs
    assert not first.exists()
    assert store.layer(store.layers.all()[0].id).users != ()


@needs_diff
def test_container_from_scratch(store):
    container = store.create_container(None)
    rootfs = store.mount(container.id)
    try:
        (rootfs / "hello").write_text("hi")
    finally:
        store.unmount(container.id)
    out = io.BytesIO()
    store.diff(container.id, out)
    assert "hello" in tar_names(out.getvalue())


def test_deep_stack_mounts(store):
    if store.driver.name != "overlay":
        pytest.skip("the short-lowerdir forms are overlay's")
    parent = None
    for i in range(70):
        parent = store.put_layer(io.BytesIO(layer_tar([(f"f{i}", "file", b"%d" % i)])),
                                 parent).id
    store.create_image("sha256:" + "d" * 64, parent, names=["deep:1"])
    container = store.create_container("deep:1")
    (spec,) = store.containers.mounts(container.id)
    assert spec.cwd is not None or "/l/" in spec.options[0]
    rootfs = store.mount(container.id)
    try:
        assert sorted(os.listdir(rootfs)) == sorted(f"f{i}" for i in range(70))
    finally:
        store.unmount(container.id)


def test_reopen_keeps_everything(store):
    image = _image(store, BASE)
    container = store.create_container(image.id, names=["kept"])
    store.mount(container.id)
    again = Store.open(store.root)
    assert again.driver.name == store.driver.name
    assert again.repair_actions == []
    assert again.image("example.com/test:1").id == image.id
    assert again.container("kept").mounts == 1
    again.unmount("kept")


def test_layer_directories_are_spread_over_block_groups(store):
    """`layers/` carries ext4's top-of-hierarchy flag (chattr +T), so each new layer
    directory is placed like /home's children (Orlov), away from freshly freed inodes."""
    import shutil
    import subprocess

    from corral.storage.drivers._util import spread_subdirs

    layers = store.driver.layers
    probe = store.root / "topdir-probe"
    probe.mkdir()
    if not spread_subdirs(probe):
        pytest.skip("the store's file system has no FS_TOPDIR_FL (not ext2/3/4)")
    if shutil.which("lsattr") is None:
        pytest.skip("needs lsattr")
    for path, marked in ((layers, True), (store.root, False)):
        flags = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True,
                               check=True).stdout.split()[0]
        assert ("T" in flags) is marked, (path, flags)
    store.put_layer(io.BytesIO(BASE))        # layers are made under it as before
    assert any(p.is_dir() for p in layers.iterdir())
