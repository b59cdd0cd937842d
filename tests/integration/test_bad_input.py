"""Bad input fails early, with a message naming the field or id, and leaves nothing:
no state directory, no cgroup, no process."""

from __future__ import annotations

import json
import os

import pytest
from tests.support.bundles import find_test_cgroups, processes_rooted_in


def _assert_rejected(runtime, bundle, result, *corral_words: str, container_id=None):
    container_id = container_id or bundle.id
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    if runtime.is_corral:
        for word in corral_words:
            assert word in result.stderr, (word, result.stderr)
    assert runtime.state_or_none(container_id) is None
    assert not (runtime.root / container_id).exists()
    assert find_test_cgroups(container_id) == []
    assert processes_rooted_in(bundle.rootfs) == []


def test_malformed_json(runtime, bundle):
    bundle.write('{"ociVersion": "1.2.0", "process": {')
    result = runtime.create(bundle, check=False)
    _assert_rejected(runtime, bundle, result, "config.json")


def test_config_not_an_object(runtime, bundle):
    bundle.write("[1, 2, 3]")
    result = runtime.create(bundle, check=False)
    _assert_rejected(runtime, bundle, result, "config.json")


def test_missing_config(runtime, bundle):
    bundle.config_path.unlink()
    result = runtime.create(bundle, check=False)
    _assert_rejected(runtime, bundle, result, "config.json")


def test_args_is_a_string(runtime, bundle):
    bundle.config["process"]["args"] = "sh -c true"
    bundle.write()
    result = runtime.create(bundle, check=False)
    _assert_rejected(runtime, bundle, result, "process.args")


def test_bogus_namespace_type(runtime, bundle):
    bundle.linux["namespaces"].append({"type": "bogus"})
    bundle.write()
    result = runtime.create(bundle, check=False)
    _assert_rejected(runtime, bundle, result, "bogus")


def test_missing_oci_version(runtime, bundle):
    del bundle.config["ociVersion"]
    bundle.write()
    result = runtime.create(bundle, check=False)
    if runtime.is_corral:  # runc 1.1 does not check it
        _assert_rejected(runtime, bundle, result, "ociVersion")


def test_unknown_capability(runtime, bundle):
    bundle.process["capabilities"]["bounding"].append("CAP_CORRAL_BOGUS")
    bundle.process["capabilities"]["effective"].append("CAP_CORRAL_BOGUS")
    bundle.write()
    result = runtime.create(bundle, check=False)
    if not runtime.is_corral and result.returncode == 0:
        pytest.xfail("runc 1.1 ignores unknown capabilities with a warning")
    _assert_rejected(runtime, bundle, result, "CAP_CORRAL_BOGUS")


def test_negative_rlimit_type(runtime, bundle):
    bundle.process["rlimits"] = [{"type": "RLIMIT_CORRAL", "soft": 1, "hard": 1}]
    bundle.write()
    result = runtime.create(bundle, check=False)
    _assert_rejected(runtime, bundle, result, "RLIMIT_CORRAL")


def test_missing_rootfs(runtime, bundle):
    bundle.config["root"]["path"] = "no-such-rootfs"
    bundle.write()
    result = runtime.create(bundle, check=False)
    _assert_rejected(runtime, bundle, result, "no-such-rootfs")


def test_relative_mount_destination_outside(runtime, bundle):
    bundle.add_mount("/corral-x", "bind", "/corral-test-missing-source", ["rbind"])
    bundle.write()
    result = runtime.create(bundle, check=False)
    _assert_rejected(runtime, bundle, result, "/corral-test-missing-source")


def test_unknown_mount_type_fails(runtime, bundle):
    bundle.add_mount("/corral-x", "corralfs", "none", [])
    bundle.write()
    result = runtime.create(bundle, check=False)
    _assert_rejected(runtime, bundle, result, "mounts")


@pytest.mark.parametrize("bad_id", ["../corral-test-x", "corral-test-a/b", "..", "",
                                    "corral-test-sp ace"])
def test_bad_ids(runtime, bundle, bad_id):
    bundle.sh("true")
    result = runtime.create(bundle, container_id=bad_id, check=False)
    assert result.returncode != 0
    if runtime.is_corral and bad_id:
        assert repr(bad_id) in result.stderr or bad_id in result.stderr
    assert not (runtime.root.parent / "corral-test-x").exists()
    assert not (runtime.root / "corral-test-a").exists()
    assert runtime.list_ids() == []
    assert processes_rooted_in(bundle.rootfs) == []


def test_existing_id(runtime, bundle, make_bundle):
    bundle.sh("sleep 30")
    runtime.create(bundle)
    first = runtime.state(bundle.id)
    other = make_bundle("dup")
    other.sh("sleep 30")
    result = runtime.create(other, container_id=bundle.id, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert bundle.id in result.stderr and "exists" in result.stderr
    else:
        assert "exists" in result.stderr
    assert runtime.state(bundle.id) == first  # the first one is untouched
    assert processes_rooted_in(other.rootfs) == []


def test_unknown_command_and_flag(runtime):
    assert runtime.call("corral-bogus-command").returncode != 0
    result = runtime.call("list", "--corral-bogus-flag")
    assert result.returncode != 0
    assert "corral-bogus-flag" in result.stderr


def test_start_unknown_container(runtime):
    result = runtime.call("start", "corral-test-missing")
    assert result.returncode != 0


def test_delete_unknown_container(runtime):
    assert runtime.call("delete", "corral-test-missing").returncode != 0
    # --force on a missing container is not an error (runc >= 1.0)
    assert runtime.call("delete", "--force", "corral-test-missing").returncode == 0


def test_kill_stopped_container_fails(runtime, bundle):
    bundle.sh("true")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    result = runtime.kill(bundle.id, "KILL", check=False)
    assert result.returncode != 0


def test_config_with_unknown_fields_is_accepted(runtime, bundle):
    bundle.config["corralUnknownTopLevel"] = {"x": 1}
    bundle.process["corralUnknown"] = True
    out = runtime.probe(bundle, "echo ok")
    assert out == "ok\n"
    assert json.loads(bundle.config_path.read_text())["corralUnknownTopLevel"] == {"x": 1}
    assert os.path.isdir(bundle.rootfs)
