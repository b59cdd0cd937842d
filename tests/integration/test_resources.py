"""Control groups (config-linux.md#control-groups, #cgroup-ownership): where the container
lands, what it sees through its cgroup namespace, and limits seen from inside."""

from __future__ import annotations

import json
import os
import time

import pytest
from tests.support.bundles import find_test_cgroups

V1_MEMORY = os.path.isdir("/sys/fs/cgroup/memory")
needs_v1 = pytest.mark.skipif(not V1_MEMORY, reason="these checks read v1 controller files")


def _host_cgroups(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.split(":", 2)[1]: line.rstrip("\n").split(":", 2)[2] for line in f}


def test_container_gets_a_cgroup_named_after_it(runtime, bundle):
    pid = runtime.start_sleeping(bundle)
    cgroups = _host_cgroups(pid)
    assert cgroups["memory"].endswith("/" + bundle.id)
    assert find_test_cgroups(bundle.id), "no cgroup directory named after the container"
    runtime.delete(bundle.id, force=True)
    deadline = time.monotonic() + 5
    while find_test_cgroups(bundle.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert find_test_cgroups(bundle.id) == []


def test_cgroup_namespace_hides_the_path(runtime, bundle):
    out = runtime.probe(bundle, "cat /proc/self/cgroup")
    for line in out.strip().splitlines():
        assert line.split(":", 2)[2] == "/", out


def test_without_cgroup_namespace_the_path_shows(runtime, bundle):
    bundle.remove_namespace("cgroup")
    out = runtime.probe(bundle, "cat /proc/self/cgroup")
    memory = [line for line in out.splitlines() if ":memory:" in line]
    assert memory and memory[0].endswith("/" + bundle.id)


@needs_v1
def test_absolute_cgroups_path(runtime, bundle):
    bundle.linux["cgroupsPath"] = "/" + bundle.id
    pid = runtime.start_sleeping(bundle)
    assert _host_cgroups(pid)["memory"] == "/" + bundle.id
    assert os.path.isdir(f"/sys/fs/cgroup/memory/{bundle.id}")


@needs_v1
def test_memory_and_pids_limits_visible_inside(runtime, bundle):
    bundle.linux["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
    bundle.linux["resources"]["pids"] = {"limit": 20}
    bundle.linux["resources"]["cpu"] = {"shares": 512}
    out = runtime.probe(bundle, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                                "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares")
    assert out.split() == [str(64 * 1024 * 1024), "20", "512"]


@needs_v1
def test_pids_limit_is_enforced(runtime, bundle):
    bundle.linux["resources"]["pids"] = {"limit": 5}
    out = runtime.probe(bundle, "sh -c 'for i in 1 2 3 4 5 6 7 8; do sleep 2 & done' "
                                "2>/dev/null; cat /sys/fs/cgroup/pids/pids.current "
                                "/sys/fs/cgroup/pids/pids.events")
    current, _, refused = out.split()
    assert int(current) <= 5
    assert int(refused) > 0  # forks the limit refused


def test_kill_all_reaches_every_process(runtime, bundle):
    bundle.remove_namespace("pid")  # without a pid namespace, killing init spares the rest
    bundle.sh("sleep 60 & sleep 60 & wait")
    runtime.create(bundle)
    runtime.start(bundle.id)
    deadline = time.monotonic() + 5
    while True:
        pids = json.loads(runtime.call("ps", "--format", "json", bundle.id, check=True).stdout)
        if len(pids) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(pids) >= 3
    runtime.kill(bundle.id, "KILL", "--all")
    deadline = time.monotonic() + 5
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, pids))


def _alive(pid: int) -> bool:
    """Not gone and not a zombie (a zombie's cmdline is empty)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return bool(f.read())
    except OSError:
        return False


def test_noexec_mount_refuses_execution(runtime, bundle):
    bundle.add_mount("/scratch", "tmpfs", "tmpfs", ["noexec", "size=1m"])
    out = runtime.probe(bundle, "cp /bin/busybox /scratch/bb; /scratch/bb true 2>/dev/null "
                                "&& echo ran || echo refused")
    assert out == "refused\n"


def test_delete_force_kills_everything_without_a_pid_namespace(runtime, bundle):
    bundle.remove_namespace("pid")
    bundle.sh("sleep 60 & sleep 60 & wait")
    runtime.create(bundle)
    runtime.start(bundle.id)
    deadline = time.monotonic() + 5
    while True:
        pids = json.loads(runtime.call("ps", "--format", "json", bundle.id, check=True).stdout)
        if len(pids) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(pids) >= 3
    runtime.delete(bundle.id, force=True)
    deadline = time.monotonic() + 5
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, pids))
    assert find_test_cgroups(bundle.id) == []
