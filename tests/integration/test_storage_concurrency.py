"""Two processes adding and removing images that share layers never corrupt the store;
a process killed mid-apply leaves a store that opens and repairs itself."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.integration.storage_support import layer_tar, temp_store

from corral.storage import Store
from corral.storage.drivers import overlay_support
from corral.storage.mount import unmount

pytest.importorskip("corral.image.layer_tar", reason="needs corral.image.layer_tar (apply_layer)")

BASE = layer_tar([("etc", "dir"), ("etc/os-release", "file", b"base")])
MIDDLE = [layer_tar([("usr", "dir"), (f"usr/m{i}", "file", b"m%d" % i)]) for i in range(3)]


@pytest.fixture(params=["overlay", "vfs"])
def driver(request):
    if request.param == "overlay":
        import tempfile

        reason = overlay_support(Path(tempfile.gettempdir()))
        if reason:
            pytest.skip(f"overlay unusable here: {reason}")
    return request.param


def _worker(root: str, worker: int, operations: int, errors) -> None:
    try:
        rng = random.Random(worker)
        store = Store.open(root)
        mine: list[str] = []
        for op in range(operations):
            if mine and rng.random() < 0.4:
                store.remove_image(mine.pop(rng.randrange(len(mine))))
                continue
            base = store.put_layer(io.BytesIO(BASE))
            middle = store.put_layer(io.BytesIO(MIDDLE[op % 3]), base.id)
            own = layer_tar([(f"w{worker}-{op}", "file", os.urandom(64))])
            top = store.put_layer(io.BytesIO(own), middle.id)
            image_id = "sha256:" + os.urandom(32).hex()
            store.create_image(image_id, top.id, names=[f"w{worker}/img:{op}", "shared:latest"])
            mine.append(image_id)
            if rng.random() < 0.3:
                container = store.create_container(image_id)
                store.remove_container(container.id)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        import traceback

        errors.put(f"worker {worker}: {exc!r}\n{traceback.format_exc()}")


def check_invariants(store: Store, *, after_repair: bool) -> None:
    home = store.home
    for name in ("layers.json", "images.json", "containers.json"):
        if (home / name).exists():
            json.loads((home / name).read_text())
    assert not [p for p in home.iterdir() if ".tmp" in p.name], "temp record files left"
    layers = {r.id: r for r in store.layers.all()}
    on_disk = {p.name for p in (home / "layers").iterdir()}
    assert on_disk == {r.hex for r in layers.values()}, "layer directories != records"
    images = store.images.all()
    image_users = {i.user for i in images}
    for image in images:
        for layer in store.layers.chain(image.top_layer):
            assert image.user in layers[layer.id].users
    for layer in layers.values():
        assert layer.parent is None or layer.parent in layers
        for user in layer.users:
            assert user in image_users or user.startswith(("hold:", "container:")), user
        if after_repair:
            assert layer.users, f"unused layer {layer.id} kept"
    names = [n for i in images for n in i.names]
    assert len(names) == len(set(names)), "a name on two images"


def test_two_processes_share_layers_without_corruption(driver):
    with temp_store(driver) as store:
        ctx = multiprocessing.get_context("fork")
        errors = ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(str(store.root), n, 20, errors))
                   for n in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
            assert w.exitcode == 0
        problems = []
        while not errors.empty():
            problems.append(errors.get())
        assert not problems, "\n".join(problems)
        check_invariants(store, after_repair=False)
        reopened = Store.open(store.root)
        check_invariants(reopened, after_repair=True)
        # exactly one image carries the moved tag
        assert sum("shared:latest" in i.names for i in reopened.images.all()) == 1
        for image in reopened.images.all():
            reopened.remove_image(image.id)
        assert reopened.layers.all() == []
        assert list((reopened.home / "layers").iterdir()) == []


SLOW_APPLY = textwrap.dedent("""
    import io, sys, tarfile, time
    from corral.storage import Store

    class Slow(io.RawIOBase):
        def __init__(self, size):
            info = tarfile.TarInfo("big")
            info.size = size
            self.head = info.tobuf(tarfile.PAX_FORMAT)
            self.left = size
        def readable(self):
            return True
        def readinto(self, buf):
            if self.head:
                n = min(len(buf), len(self.head))
                buf[:n] = self.head[:n]
                self.head = self.head[n:]
                return n
            if self.left <= 0:
                return 0
            time.sleep(0.005)
            n = min(len(buf), self.left, 1 << 16)
            buf[:n] = bytes(n)
            self.left -= n
            return n

    store = Store.open(sys.argv[1])
    print("applying", flush=True)
    store.put_layer(io.BufferedReader(Slow(1 << 30)))
    print("done", flush=True)
""")


def test_kill_mid_apply_then_repair(driver):
    with temp_store(driver) as store:
        kept = store.put_layer(io.BytesIO(BASE))
        store.create_image("sha256:" + "e" * 64, kept.id, names=["kept:1"])
        child = subprocess.Popen([sys.executable, "-c", SLOW_APPLY, str(store.root)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            staging = None
            while time.monotonic() < deadline:
                found = [p for p in (store.home / "layers").iterdir() if p.name.startswith("tmp-")]
                big = [f for p in found for f in p.rglob("big")]
                if big and big[0].stat().st_size > (1 << 20):
                    staging = found[0]
                    break
                assert child.poll() is None, child.communicate()
                time.sleep(0.05)
            assert staging is not None, "the child never started applying"
            # a store opened while the apply runs leaves the live staging directory alone
            Store.open(store.root)
            assert staging.exists()
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        assert staging.exists()  # the half-made layer the crash left
        repaired = Store.open(store.root)
        assert any("half-made" in a and staging.name in a for a in repaired.repair_actions)
        assert not staging.exists()
        check_invariants(repaired, after_repair=True)
        assert repaired.image("kept:1").top_layer == kept.id
        again = repaired.put_layer(io.BytesIO(MIDDLE[0]), kept.id)
        assert repaired.layer(again.id).parent == kept.id


def test_repair_after_lost_mounts_and_bad_refcounts(driver):
    with temp_store(driver) as store:
        layer = store.put_layer(io.BytesIO(BASE))
        image = store.create_image("sha256:" + "f" * 64, layer.id, names=["img:1"])
        container = store.create_container(image.id)
        merged = store.mount(container.id)
        unmount(merged)  # e.g. a reboot: the mount is gone, the record says mounted
        # users wrong in the record: a dead hold, a vanished image, the container missing
        records = json.loads((store.home / "layers.json").read_text())
        records["layers"][0]["users"] = ["hold:999999999:1", "image:sha256:" + "0" * 64]
        (store.home / "layers.json").write_text(json.dumps(records))
        # crash debris: an unrecorded layer directory and a container directory
        (store.home / "layers" / ("9" * 64)).mkdir()
        (store.home / "containers" / ("8" * 64)).mkdir()
        repaired = Store.open(store.root)
        assert repaired.container(container.id).mounts == 0
        assert set(repaired.layer(layer.id).users) == {image.user, f"container:{container.id}"}
        assert not (store.home / "layers" / ("9" * 64)).exists()
        assert not (store.home / "containers" / ("8" * 64)).exists()
        check_invariants(repaired, after_repair=True)
        rootfs = repaired.mount(container.id)
        assert (rootfs / "etc/os-release").read_bytes() == b"base"
        repaired.unmount(container.id)
