"""corral.oci.runtime_config: the rules of config.md the JSON schema cannot express."""

from __future__ import annotations

import json

import pytest

from corral.errors import InvalidArgument, NotFound
from corral.oci.runtime_config import ConfigError, load_bundle, namespaces, parse, rootfs_path
from corral.runtime.spec_template import template


def _config(**changes) -> dict:
    config = json.loads(json.dumps(template()))
    config["process"]["terminal"] = False
    for dotted, value in changes.items():
        node = config
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return config


def _error(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse(json.dumps(config), "bundle/config.json")
    assert isinstance(info.value, InvalidArgument)
    return str(info.value)


def test_template_is_valid():
    config = parse(json.dumps(_config()))
    assert config["process"]["args"] == ["sh"]


def test_error_names_the_origin_file():
    assert _error(_config(process__cwd="rel")).startswith("bundle/config.json: ")


def test_unknown_capability():
    message = _error(_config(process__capabilities__bounding=["CAP_KILL", "CAP_FLY"]))
    assert "process.capabilities.bounding" in message
    assert "CAP_FLY" in message


def test_unknown_capability_in_ambient():
    assert "process.capabilities.ambient" in _error(
        _config(process__capabilities__ambient=["CAP_NOPE"]))


def test_duplicate_namespace():
    namespaces_ = [{"type": "pid"}, {"type": "mount"}, {"type": "pid"}]
    message = _error(_config(linux__namespaces=namespaces_))
    assert "linux.namespaces[2].type" in message
    assert "twice" in message


def test_relative_namespace_path():
    message = _error(_config(linux__namespaces=[{"type": "uts"}, {"type": "network",
                                                                 "path": "proc/1/ns/net"}]))
    assert "linux.namespaces[1].path" in message


def test_relative_mount_destination():
    mounts = [{"destination": "/proc", "type": "proc", "source": "proc"},
              {"destination": "tmp", "type": "tmpfs", "source": "tmpfs"}]
    message = _error(_config(mounts=mounts))
    assert "mounts[1].destination" in message
    assert "'tmp'" in message


def test_hostname_without_uts_namespace():
    namespaces_ = [{"type": "pid"}, {"type": "mount"}]
    assert _error(_config(linux__namespaces=namespaces_)).startswith(
        "bundle/config.json: hostname:")


def test_domainname_without_uts_namespace():
    config = _config(linux__namespaces=[{"type": "mount"}], domainname="example.org")
    del config["hostname"]
    assert "domainname" in _error(config)


def test_hostname_with_uts_namespace_is_fine():
    parse(json.dumps(_config(linux__namespaces=[{"type": "uts"}, {"type": "mount"}])))


def test_uid_mappings_need_a_user_namespace():
    config = _config(linux__uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}])
    assert "linux.uidMappings" in _error(config)


def test_empty_args():
    assert "process.args" in _error(_config(process__args=[]))


def test_relative_cwd():
    assert "process.cwd" in _error(_config(process__cwd="tmp"))


def test_unknown_rlimit():
    message = _error(_config(process__rlimits=[{"type": "RLIMIT_WINGS", "soft": 1, "hard": 1}]))
    assert "process.rlimits[0].type" in message


def test_repeated_rlimit():
    limit = {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}
    assert "process.rlimits[1].type" in _error(_config(process__rlimits=[limit, limit]))


def test_soft_above_hard_rlimit():
    message = _error(_config(process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]))
    assert "process.rlimits[0]" in message


def test_device_without_numbers():
    assert "linux.devices[0]" in _error(_config(linux__devices=[{"path": "/dev/x", "type": "c"}]))


def test_sysctl_key_with_slash():
    assert "linux.sysctl" in _error(_config(linux__sysctl={"net/ipv4/ip_forward": "1"}))


def test_schema_errors_are_config_errors():
    assert "process.args" in _error(_config(process__args="sh"))


def test_not_json():
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse(b"{", "config.json")


def test_load_bundle(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_config()))
    assert load_bundle(str(tmp_path))["root"]["path"] == "rootfs"


def test_load_bundle_without_config(tmp_path):
    with pytest.raises(NotFound, match="config.json"):
        load_bundle(str(tmp_path))


def test_namespaces_and_rootfs_path():
    config = _config(linux__namespaces=[{"type": "uts"}, {"type": "network",
                                                         "path": "/proc/1/ns/net"}])
    assert namespaces(config) == {"uts": None, "network": "/proc/1/ns/net"}
    assert rootfs_path(config, "/b") == "/b/rootfs"
    config["root"]["path"] = "/abs/root"
    assert rootfs_path(config, "/b") == "/abs/root"
