"""Hooks (config.md#posix-platform-hooks, runtime.md#lifecycle): each kind runs at
its moment, gets the state on stdin, and a failing or slow hook fails create cleanly."""

from __future__ import annotations

import os
import time

import pytest
from tests.support.bundles import find_test_cgroups

# Appends "<name> <status> <env> <args>" to the log: runs on the host (host /bin/sh)
# and, copied into the rootfs, inside the container (busybox sh).
HOOK = r"""#!/bin/sh
state=$(cat)
status=$(printf '%s' "$state" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')
id=$(printf '%s' "$state" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
echo "$1 $status ${CORRAL_HOOK:-noenv} $id" >> "$2"
"""

STAGES_IN_HOST = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")


def _log_lines(path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


@pytest.fixture
def hooked(bundle):
    """A bundle with one recording hook of every kind; returns (bundle, log path)."""
    logdir = bundle.path / "hooklog"
    logdir.mkdir()
    os.chmod(logdir, 0o777)
    host_hook = bundle.path / "hook.sh"
    host_hook.write_text(HOOK)
    os.chmod(host_hook, 0o755)
    (bundle.rootfs / "hook.sh").write_text(HOOK)
    os.chmod(bundle.rootfs / "hook.sh", 0o755)
    bundle.add_mount("/hooklog", "bind", str(logdir), ["rbind", "rw"])
    log = logdir / "log"
    for stage in STAGES_IN_HOST:
        bundle.hook(stage, str(host_hook), ["hook.sh", stage, str(log)],
                    env=["CORRAL_HOOK=yes", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
    # startContainer's path resolves inside the container
    bundle.hook("startContainer", "/hook.sh", ["hook.sh", "startContainer", "/hooklog/log"],
                env=["CORRAL_HOOK=yes", "PATH=/bin"])
    bundle.sh("echo process-ran >> /hooklog/log; sleep 30")
    return bundle, log


RUNC_POSTSTART = ("runc 1.1 runs poststart hooks at the end of create, not after start "
                  "(runtime.md#lifecycle step 9; fixed in runc 1.2)")


def _runc_poststart_bug(runtime, request) -> None:
    if not runtime.is_corral:
        request.applymarker(pytest.mark.xfail(reason=RUNC_POSTSTART, strict=False))


def _names(log) -> list[str]:
    return [line[0] for line in _log_lines(log)]


def test_hooks_run_at_each_stage(runtime, hooked, request):
    _runc_poststart_bug(runtime, request)
    bundle, log = hooked
    runtime.create(bundle)
    assert _names(log) == ["prestart", "createRuntime", "createContainer"]
    runtime.start(bundle.id)
    deadline = time.monotonic() + 10
    while "process-ran" not in _names(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    names = _names(log)
    assert names[:4] == ["prestart", "createRuntime", "createContainer", "startContainer"]
    assert set(names[4:]) == {"poststart", "process-ran"}
    assert "poststop" not in names
    runtime.delete(bundle.id, force=True)
    assert _names(log)[-1] == "poststop"
    assert _names(log).count("poststop") == 1


def test_hooks_get_state_env_and_args(runtime, hooked, request):
    _runc_poststart_bug(runtime, request)
    bundle, log = hooked
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.delete(bundle.id, force=True)
    entries = {line[0]: line[1:] for line in _log_lines(log) if line[0] != "process-ran"}
    for stage, (status, env, container_id) in entries.items():
        assert env == "yes", stage
        assert container_id == bundle.id, stage
    assert entries["prestart"][0] in ("creating", "created")
    assert entries["createRuntime"][0] in ("creating", "created")
    assert entries["createContainer"][0] in ("creating", "created")
    assert entries["startContainer"][0] in ("created", "running")
    assert entries["poststart"][0] == "running"
    assert entries["poststop"][0] == "stopped"


def test_poststart_not_during_create(runtime, hooked, request):
    _runc_poststart_bug(runtime, request)
    bundle, log = hooked
    runtime.create(bundle)
    time.sleep(0.3)
    assert "poststart" not in _names(log)
    assert "startContainer" not in _names(log)
    assert "process-ran" not in _names(log)


def test_poststop_at_delete_of_a_stopped_container(runtime, hooked):
    bundle, log = hooked
    bundle.sh("echo process-ran >> /hooklog/log")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    assert "poststop" not in _names(log)
    runtime.delete(bundle.id)
    assert _names(log)[-1] == "poststop"


def test_run_runs_every_hook(runtime, hooked):
    bundle, log = hooked
    bundle.sh("echo process-ran >> /hooklog/log")
    result = runtime.run(bundle)
    assert result.returncode == 0, result
    names = _names(log)
    assert names[:3] == ["prestart", "createRuntime", "createContainer"]
    assert {"startContainer", "poststart", "process-ran"} <= set(names)
    assert names.index("startContainer") < names.index("process-ran")
    assert names[-1] == "poststop"


def _assert_nothing_left(runtime, bundle):
    assert runtime.state_or_none(bundle.id) is None
    assert not (runtime.root / bundle.id).exists()
    assert find_test_cgroups(bundle.id) == []
    out = (bundle.path / "stdout.log")
    assert not out.exists() or "should-not-run" not in out.read_text()


@pytest.mark.parametrize("stage", ["prestart", "createRuntime", "createContainer"])
def test_failing_hook_fails_create_cleanly(runtime, bundle, stage):
    bundle.hook(stage, "/bin/sh", ["sh", "-c", "exit 3"])
    bundle.sh("echo should-not-run")
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert stage in result.stderr
    _assert_nothing_left(runtime, bundle)


def test_hook_timeout_fails_create_cleanly(runtime, bundle):
    bundle.hook("createRuntime", "/bin/sh", ["sh", "-c", "exec sleep 20"], timeout=1)
    bundle.sh("echo should-not-run")
    started = time.monotonic()
    result = runtime.create(bundle, check=False)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < 10, f"the hook timeout was not enforced ({elapsed:.1f}s)"
    if runtime.is_corral:
        assert "timed out" in result.stderr and "createRuntime" in result.stderr
    _assert_nothing_left(runtime, bundle)


def test_missing_hook_binary_fails_create(runtime, bundle):
    bundle.hook("prestart", "/corral-test-no-such-hook", ["x"])
    bundle.sh("echo should-not-run")
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert "/corral-test-no-such-hook" in result.stderr
    _assert_nothing_left(runtime, bundle)


def test_prestart_runs_in_the_container_network_namespace_pid(runtime, bundle):
    """prestart gets the init's pid: /proc/<pid>/ns/net is the container's netns."""
    out = bundle.path / "prestart.out"
    bundle.hook("prestart", "/bin/sh",
                ["sh", "-c", (f"pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'); "
                              f"readlink /proc/$pid/ns/net > {out}")])
    pid = runtime.start_sleeping(bundle)
    assert out.read_text().strip() == os.readlink(f"/proc/{pid}/ns/net")


def test_hooks_run_in_the_right_namespaces(runtime, bundle):
    """createRuntime and poststart in the runtime's namespaces; createContainer and
    startContainer in the container's (config.md#posix-platform-hooks)."""
    logdir = bundle.path / "nslog"
    logdir.mkdir()
    os.chmod(logdir, 0o777)
    bundle.add_mount("/nslog", "bind", str(logdir), ["rbind", "rw"])
    for stage in ("createRuntime", "createContainer", "poststart"):
        bundle.hook(stage, "/bin/sh", ["sh", "-c", f"readlink /proc/self/ns/mnt > {logdir}/{stage}"])
    bundle.hook("startContainer", "/bin/sh",
                ["sh", "-c", "readlink /proc/self/ns/mnt > /nslog/startContainer"])
    pid = runtime.start_sleeping(bundle)
    container_mnt, host_mnt = os.readlink(f"/proc/{pid}/ns/mnt"), os.readlink("/proc/self/ns/mnt")
    deadline = time.monotonic() + 5
    while not (logdir / "poststart").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = {stage: (logdir / stage).read_text().strip() for stage in
            ("createRuntime", "createContainer", "startContainer", "poststart")}
    assert seen["createRuntime"] == host_mnt
    assert seen["poststart"] == host_mnt
    assert seen["createContainer"] == container_mnt
    assert seen["startContainer"] == container_mnt


def test_failing_poststop_does_not_block_delete(runtime, bundle):
    bundle.hook("poststop", "/bin/sh", ["sh", "-c", "exit 9"])
    bundle.sh("true")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    runtime.delete(bundle.id, check=False)
    assert runtime.state_or_none(bundle.id) is None
    assert find_test_cgroups(bundle.id) == []
