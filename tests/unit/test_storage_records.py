"""Storage pieces that need no root: chain ids, records, locks, holds, name resolution,
and the overlay driver's lowerdir forms (short links, relative paths past a page)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from corral.errors import InvalidArgument, NotFound
from corral.storage import holds
from corral.storage.drivers.overlay import PAGE_SIZE, OverlayDriver
from corral.storage.errors import AmbiguousReference, ImageNotFound, InvalidId
from corral.storage.images import ImageRecord, ImageStore
from corral.storage.layers import chain_id
from corral.storage.records import FileLock, check_hex_id, read_json, write_json

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


def test_chain_id_follows_the_image_spec():
    assert chain_id(None, D1) == D1
    expected = "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    assert chain_id(D1, D2) == expected


def test_chain_id_matches_oci_image_helper():
    image = pytest.importorskip("corral.oci.image")
    assert image.chain_ids([D1, D2]) == [D1, chain_id(D1, D2)]


@pytest.mark.parametrize("bad", ["", "../x", "sha256:abc", "A" * 64, "a" * 63 + "/"])
def test_ids_used_as_paths_are_validated(bad):
    with pytest.raises(InvalidId) as err:
        check_hex_id(bad, "layer id")
    assert isinstance(err.value, InvalidArgument)
    assert repr(bad) in str(err.value)
    with pytest.raises(InvalidArgument):
        chain_id(None, "sha256:../../etc")


def test_write_json_replaces_atomically(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp files left
    assert read_json(tmp_path / "missing.json", {"x": []}) == {"x": []}


def test_corrupt_record_names_the_file(tmp_path):
    from corral.storage.errors import StorageCorrupt

    path = tmp_path / "layers.json"
    path.write_text("{not json")
    with pytest.raises(StorageCorrupt, match="layers.json"):
        read_json(path, {})


def _hold_lock(path, ready, release):
    lock = FileLock(Path(path))
    with lock.held():
        ready.set()
        release.wait(10)


def test_file_lock_is_reentrant_and_excludes_other_processes(tmp_path):
    lock = FileLock(tmp_path / "storage.lock")
    with lock.held(), lock.held():
        pass
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(tmp_path / "storage.lock"), ready, release))
    child.start()
    try:
        assert ready.wait(10)
        import fcntl

        fd = os.open(tmp_path / "storage.lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        release.set()
        child.join(10)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    finally:
        release.set()
        child.join(10)


def test_holds_follow_process_lifetime():
    mine = holds.current()
    assert holds.is_hold(mine) and holds.alive(mine)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(holds.current()))
    child.start()
    theirs = queue.get(timeout=10)
    child.join(10)
    time.sleep(0.05)
    assert theirs != mine and not holds.alive(theirs)
    assert not holds.alive("hold:notapid:1")


def _images(*records: ImageRecord) -> dict[str, ImageRecord]:
    return {r.id: r for r in records}


def test_image_resolution_by_name_id_prefix_and_digest():
    one = ImageRecord(id="sha256:" + "12" * 32, names=("docker.io/library/busybox:latest",),
                      manifest_digest="sha256:" + "9" * 64)
    two = ImageRecord(id="sha256:" + "13" * 32, names=("example.com:5000/app:v1",))
    images = _images(one, two)
    find = ImageStore._find
    assert find(images, "docker.io/library/busybox:latest") is one
    assert find(images, one.id) is one
    assert find(images, "1212") is one
    assert find(images, "sha256:1313") is two
    assert find(images, "example.com:5000/app:v1") is two
    assert find(images, "busybox@sha256:" + "9" * 64) is one
    three = ImageRecord(id="sha256:" + "1213" + "0" * 60)
    with pytest.raises(AmbiguousReference, match="'121'"):
        find(_images(one, two, three), "121")
    with pytest.raises(ImageNotFound) as err:
        find(images, "nothere")
    assert isinstance(err.value, NotFound) and "nothere" in str(err.value)


def test_image_resolution_normalizes_docker_names():
    pytest.importorskip("corral.oci.reference")
    one = ImageRecord(id="sha256:" + "12" * 32, names=("docker.io/library/busybox:latest",))
    assert ImageStore._find(_images(one), "busybox") is one


def _stack(driver: OverlayDriver, depth: int) -> str:
    parent = None
    for i in range(depth):
        layer = f"{i:064x}"
        driver.create(layer, parent)
        parent = layer
    assert parent is not None
    return parent


def test_overlay_lowerdirs_are_top_first(tmp_path):
    driver = OverlayDriver(tmp_path / "home")
    top = _stack(driver, 3)
    (spec,) = driver.mounts(top, tmp_path / "rw")
    lower = spec.options[0].removeprefix("lowerdir=").split(":")
    assert lower == [str(driver.layers / f"{i:064x}" / "diff") for i in (2, 1, 0)]
    assert spec.options[1:] == (f"upperdir={tmp_path / 'rw' / 'upper'}",
                                f"workdir={tmp_path / 'rw' / 'work'}",
                                "redirect_dir=off", "metacopy=off")
    assert spec.cwd is None
    (ro,) = driver.mounts(f"{0:064x}", None)
    assert ro.type == "bind" and "ro" in ro.options  # one lower: overlay cannot do it


def test_overlay_switches_to_short_links_then_relative_paths(tmp_path):
    home = tmp_path / ("h" * 40)
    driver = OverlayDriver(home)
    depth = (PAGE_SIZE - 400) // (len(str(home)) + 30)  # short links fit, full paths do not
    assert depth * len(str(driver.layers / ("0" * 64) / "diff")) > PAGE_SIZE
    top = _stack(driver, depth)
    (spec,) = driver.mounts(top, tmp_path / "rw")
    assert spec.cwd is None
    lowers = spec.options[0].removeprefix("lowerdir=").split(":")
    assert all(p.startswith(str(home / "l") + "/") for p in lowers)
    assert all(os.path.realpath(p) == str(driver.layers / f"{depth - 1 - i:064x}" / "diff")
               for i, p in enumerate(lowers))
    assert len(spec.data()) < PAGE_SIZE
    top = _stack_more(driver, top, depth, 120)
    (spec,) = driver.mounts(top, tmp_path / "rw")
    assert spec.cwd == str(home)
    lowers = spec.options[0].removeprefix("lowerdir=").split(":")
    assert len(lowers) == 120 and all(p.startswith("l/") for p in lowers)
    assert len(spec.data()) < PAGE_SIZE
    top = _stack_more(driver, top, 120, 150)
    with pytest.raises(InvalidArgument, match="150 layers"):
        driver.mounts(top, tmp_path / "rw")


def _stack_more(driver: OverlayDriver, parent: str, start: int, stop: int) -> str:
    for i in range(start, stop):
        layer = f"{i:064x}"
        driver.create(layer, parent)
        parent = layer
    return parent


def test_overlay_rename_keeps_the_short_link(tmp_path):
    driver = OverlayDriver(tmp_path)
    driver.create("tmp-x", None)
    link = (driver.layers / "tmp-x" / "link").read_text()
    driver.rename("tmp-x", "f" * 64)
    assert os.path.realpath(driver.links / link) == str(driver.layers / ("f" * 64) / "diff")
    driver.remove("f" * 64)
    assert not os.path.lexists(driver.links / link)
