"""The Store facade: driver choice and mismatch, garbage collection of layers and blobs."""

from __future__ import annotations

import io
import json
import os

import pytest
from tests.integration.storage_support import layer_tar, temp_store

from corral.errors import FailedPrecondition
from corral.storage import DriverMismatch, Store
from corral.storage.drivers import overlay_support

pytest.importorskip("corral.image.layer_tar", reason="needs corral.image.layer_tar (apply_layer)")


def test_driver_is_recorded_and_cannot_change():
    with temp_store("vfs") as store:
        assert (store.home / "driver").read_text().strip() == "vfs"
        assert Store.open(store.root).driver.name == "vfs"
        with pytest.raises(DriverMismatch, match="vfs") as err:
            Store.open(store.root, "overlay")
        assert isinstance(err.value, FailedPrecondition)
        assert str(store.root) in str(err.value)


def test_default_driver_is_overlay_when_it_works(monkeypatch):
    monkeypatch.delenv("CORRAL_STORAGE_DRIVER", raising=False)
    with temp_store(None) as store:
        expected = "overlay" if overlay_support(store.home) is None else "vfs"
        assert store.driver.name == expected


def test_env_forces_the_driver(monkeypatch):
    monkeypatch.setenv("CORRAL_STORAGE_DRIVER", "vfs")
    with temp_store(None) as store:
        assert store.driver.name == "vfs"


def test_prune_removes_unreferenced_blobs_and_layers():
    with temp_store("vfs") as store:
        content = store.content
        layer_bytes = layer_tar([("a", "file", b"a")])
        blob = content.write_bytes(layer_bytes)
        layer = store.put_layer(io.BytesIO(layer_bytes), compressed_digest=blob.digest)
        config = content.write_bytes(json.dumps({"rootfs": {"diff_ids": [layer.diff_id]}}).encode())
        manifest = content.write_bytes(json.dumps({
            "schemaVersion": 2, "config": {"digest": config.digest, "size": config.size},
            "layers": [{"digest": blob.digest, "size": blob.size}]}).encode())
        store.create_image(config.digest, layer.id, names=["kept:1"],
                           manifest_digest=manifest.digest)
        stray = content.write_bytes(b"nobody uses me")
        fresh = content.write_bytes(b"just written by a load")
        old = os.path.getmtime(content.path(stray.digest)) - 3600
        os.utime(content.path(stray.digest), (old, old))
        # an unused layer, held by a process that is gone
        unused = store.put_layer(io.BytesIO(layer_tar([("b", "file", b"b")])))
        store.layers.release_hold(unused.id)
        result = store.prune(blob_grace=600)
        assert result["blobs"] == [stray.digest]
        assert result["layers"] == [unused.id]
        assert all(content.exists(d) for d in (blob.digest, config.digest, manifest.digest,
                                                fresh.digest))
        store.remove_image("kept:1")
        result = store.prune(blob_grace=0)
        assert set(result["blobs"]) == {blob.digest, config.digest, manifest.digest, fresh.digest}
        assert list(content.walk()) == []


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_retired_container_is_gone_at_once_and_finished_later(driver):
    """`run --rm`'s removal: the record goes and the mounted directory moves aside;
    finish_removal (run in the background by the engine) unmounts and deletes it, and a
    directory left aside by a killed finisher is swept by repair()."""
    from corral.storage.containers import finish_removal
    from corral.storage.mount import mounts_under

    with temp_store(driver) as store:
        layer = store.put_layer(io.BytesIO(layer_tar([("a", "file", b"a")])))
        config = store.content.write_bytes(json.dumps(
            {"rootfs": {"diff_ids": [layer.diff_id]}}).encode())
        store.create_image(config.digest, layer.id, names=["img:1"])
        store.layers.release_hold(layer.id)
        layers_dir = store.containers.dir
        for finisher in ("finish", "repair"):
            record = store.create_container("img:1", names=[f"c-{finisher}"])
            merged = store.mount(record.id)
            assert (merged / "a").read_bytes() == b"a"
            _, aside = store.containers.retire(record.id)
            assert aside.parent == layers_dir and not store.containers.path(record.id).exists()
            assert [c.id for c in store.list_containers()] == []
            assert (aside / "merged" / "a").read_bytes() == b"a"  # still mounted, moved
            if finisher == "finish":
                finish_removal(aside)
            else:
                assert any("removed unrecorded container directory" in a
                           for a in store.repair())
            assert not aside.exists() and mounts_under(layers_dir) == []
        store.remove_image("img:1")  # the retired containers no longer use the layer
        store.prune(blob_grace=0)
        assert not store.layers.exists(layer.id)
