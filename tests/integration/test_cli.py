"""The runc command-line contract beyond the lifecycle: spec, features, relative
bundle paths, paused containers."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from tests.support import specs
from tests.support.bundles import processes_rooted_in


def test_spec_output_is_a_valid_config(runtime, tmp_path):
    runtime.call("spec", "--bundle", str(tmp_path), check=True)
    config = json.loads((tmp_path / "config.json").read_text())
    specs.validator("config-schema.json").validate(config)
    assert config["root"]["path"] == "rootfs"
    assert config["process"]["args"] == ["sh"]


def test_spec_rootless(runtime, tmp_path):
    runtime.call("spec", "--rootless", "--bundle", str(tmp_path), check=True)
    config = json.loads((tmp_path / "config.json").read_text())
    specs.validator("config-schema.json").validate(config)
    assert "user" in [ns["type"] for ns in config["linux"]["namespaces"]]
    assert config["linux"]["uidMappings"]


def test_spec_refuses_to_overwrite(runtime, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    result = runtime.call("spec", "--bundle", str(tmp_path))
    assert result.returncode != 0
    assert (tmp_path / "config.json").read_text() == "{}"


def test_features_output_is_valid(runtime):
    result = runtime.call("features")
    if result.returncode != 0 and not runtime.is_corral:
        pytest.skip("this runc has no `features` command")
    features = json.loads(result.stdout)
    specs.validator("features-schema.json").validate(features)
    assert "mount" in features["linux"]["namespaces"]
    assert "prestart" in features["hooks"]


def test_relative_bundle_path_is_made_absolute(runtime, bundle):
    bundle.sh("sleep 30")
    result = runtime.call_detached("create", "--bundle", ".", bundle.id, log_dir=bundle.path,
                                   cwd=str(bundle.path))
    assert result.returncode == 0, result
    state = runtime.state(bundle.id)
    assert os.path.isabs(state["bundle"])
    assert Path(state["bundle"]).resolve() == bundle.path.resolve()


def test_bundle_defaults_to_the_cwd(runtime, bundle):
    bundle.sh("sleep 30")
    result = runtime.call_detached("create", bundle.id, log_dir=bundle.path,
                                   cwd=str(bundle.path))
    assert result.returncode == 0, result
    assert Path(runtime.state(bundle.id)["bundle"]).resolve() == bundle.path.resolve()


def test_exec_in_paused_container_fails(runtime, bundle):
    runtime.start_sleeping(bundle)
    runtime.call("pause", bundle.id, check=True)
    try:
        result = runtime.exec(bundle.id, "true", timeout=10)
        assert result.returncode != 0
        if runtime.is_corral:
            assert "paused" in result.stderr
    finally:
        runtime.call("resume", bundle.id, check=True)
    assert runtime.exec(bundle.id, "true").returncode == 0


def test_version(runtime):
    result = runtime.call("--version", check=True)
    assert "spec" in result.stdout


def test_log_file_json(runtime, bundle, tmp_path):
    """conmon and podman read errors from --log in --log-format json."""
    log = tmp_path / "runtime.log"
    bundle.write('{"ociVersion": ')
    argv = ["--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle.path),
            bundle.id]
    result = runtime.call(*argv)
    assert result.returncode != 0
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    errors = [e for e in entries if e.get("level") == "error"]
    assert errors, entries
    assert all("msg" in e and "time" in e for e in errors)


def test_delete_force_of_a_paused_container(runtime, bundle):
    pid = runtime.start_sleeping(bundle)
    runtime.call("pause", bundle.id, check=True)
    assert runtime.status(bundle.id) == "paused"
    runtime.delete(bundle.id, force=True)
    assert runtime.state_or_none(bundle.id) is None
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the frozen init survived delete --force"


def test_kill_a_paused_container(runtime, bundle):
    runtime.start_sleeping(bundle)
    runtime.call("pause", bundle.id, check=True)
    runtime.kill(bundle.id, "KILL")
    runtime.call("resume", bundle.id, check=False)
    runtime.wait_status(bundle.id, "stopped")


def test_concurrent_creates_of_one_id(runtime, make_bundle, request):
    """Two creates racing for one id: exactly one wins, the loser leaves nothing."""
    import subprocess

    if not runtime.is_corral:
        request.applymarker(pytest.mark.xfail(
            reason="runc 1.1: the losing create tears down the winner's state "
                   "(both fail: 'file exists' / 'unable to store init state')", strict=False))

    first, second = make_bundle("race1"), make_bundle("race2")
    for b in (first, second):
        b.sh("sleep 30")
    container_id = first.id
    runtime.created.append(container_id)
    # stdio to files: the winner's container inherits them and keeps them open
    logs = [open(b.path / "race.log", "wb") for b in (first, second)]  # noqa: SIM115
    try:
        procs = [subprocess.Popen(runtime.argv("create", "--bundle", str(b.path), container_id),
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                 for b, log in zip((first, second), logs)]
        codes = [p.wait(timeout=30) for p in procs]
    finally:
        for log in logs:
            log.close()
    try:
        errors = [(b.path / "race.log").read_text() for b in (first, second)]
        assert codes.count(0) == 1, (codes, errors)
        state = runtime.state(container_id)
        assert state["status"] == "created"
        winner = first if codes[0] == 0 else second
        assert Path(state["bundle"]).resolve() == winner.path.resolve()
        loser = second if winner is first else first
        assert processes_rooted_in(loser.rootfs) == []
    finally:
        # runc 1.1 can lose track of an init in this race (its state is torn down):
        # kill whatever still runs in this id's cgroup, or it waits forever.
        _kill_in_cgroup_named(container_id)


def _kill_in_cgroup_named(name: str) -> None:
    import signal

    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                if f"/{name}" not in f.read():
                    continue
            os.kill(int(entry), signal.SIGKILL)
        except OSError:
            continue


def test_concurrent_creates_of_different_ids(runtime, make_bundle):
    import subprocess

    bundles = [make_bundle(f"par{i}") for i in range(4)]
    for b in bundles:
        b.sh("sleep 30")
        runtime.created.append(b.id)
    procs = [subprocess.Popen(runtime.argv("create", "--bundle", str(b.path), b.id),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for b in bundles]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4
    assert sorted(runtime.list_ids()) == sorted(b.id for b in bundles)
    for b in bundles:
        assert runtime.status(b.id) == "created"
