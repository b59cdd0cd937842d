"""Container.save: with the config encoded ahead (as create does), the same state.json."""

from __future__ import annotations

from corral.oci import fastjson
from corral.runtime.state import Container


def _data(config: dict) -> dict:
    return {"ociVersion": "1.2.0", "id": "c1", "pid": 42, "annotations": {"a": "ü\n"},
            "cgroup_paths": {"pids": "/sys/fs/cgroup/pids/c1"}, "config": config}


def test_save_with_config_encoded_ahead_writes_what_dumps_writes(tmp_path):
    config = {"ociVersion": "1.2.0", "process": {"args": ["sh", "-c", "echo \"hi\""]},
              "linux": {"namespaces": [{"type": "pid"}]}}
    container = Container(str(tmp_path), "c1")
    (tmp_path / "c1").mkdir()
    container.serialize_config_ahead(config)
    container.data = _data(config)
    container.save()
    text = (tmp_path / "c1" / "state.json").read_text()
    assert text == fastjson.dumps(_data(config))
    assert Container.load(str(tmp_path), "c1").data == _data(config)


def test_save_ignores_a_config_encoded_ahead_that_is_not_the_one_saved(tmp_path):
    container = Container(str(tmp_path), "c1")
    (tmp_path / "c1").mkdir()
    container.serialize_config_ahead({"old": True})
    container.data = _data({"new": True})
    container.save()
    assert Container.load(str(tmp_path), "c1").data["config"] == {"new": True}
