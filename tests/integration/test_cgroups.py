"""The cgroup side of the runtime, corral-runtime and runc side by side: limits that
bite (OOM kill reported by `events`, pids.max against a fork bomb), the freezer
(pause/resume), `update` seen in the cgroup files and `events --stats`, `kill --all`
on a paused container, nested cgroups on delete, bad resource values refused
before anything exists, and the cgroup v2 eBPF device filter on whatever v2
hierarchy the host has (on a hybrid host, its controller-less unified mount).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
import uuid

import pytest
from tests.support.bundles import ID_PREFIX, find_test_cgroups

from corral.linux import cgroups

MiB = 1024 * 1024


def _cgroup_dir(pid: int, controller: str) -> str | None:
    """The host directory of `pid`'s cgroup holding `controller` (v1 first, then v2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    hierarchies = cgroups.detect()
    for _, controllers, path in lines:
        if controller in controllers.split(","):
            for h in hierarchies:
                if h.version == 1 and controller in h.controllers:
                    return h.mount_point + path
    for number, _, path in lines:
        if number == "0":
            for h in hierarchies:
                if h.version == 2:
                    directory = h.mount_point + path
                    if controller in _read(directory, "cgroup.controllers").split():
                        return directory
    return None


def _read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def _stats(runtime, container_id: str) -> dict:
    result = runtime.call("events", "--stats", container_id, check=True)
    event = json.loads(result.stdout)
    assert event["type"] == "stats" and event["id"] == container_id
    return event["data"]


def _wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- limits that bite -----------------------------------------------------------------
def test_memory_hog_is_oom_killed_and_events_reports_it(runtime, bundle):
    bundle.linux["resources"]["memory"] = {"limit": 20 * MiB, "swap": 20 * MiB}
    pid = runtime.start_sleeping(bundle)
    memory_dir = _cgroup_dir(pid, "memory")
    if memory_dir is None:
        pytest.skip("the host has no memory controller for containers")
    events = subprocess.Popen(runtime.argv("events", "--interval", "1s", bundle.id),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []

        def next_line(timeout: float) -> str | None:
            ready, _, _ = select.select([events.stdout], [], [], timeout)
            return events.stdout.readline() if ready else None

        first = next_line(10)  # the first stats event: the watcher is registered
        assert first, f"{runtime.name}: events printed nothing: {events.stderr}"
        assert json.loads(first)["type"] == "stats"
        hog = runtime.exec(bundle.id, "sh", "-c", "tail /dev/zero", timeout=60)
        assert hog.returncode != 0, f"{runtime.name}: the hog survived a 20 MiB limit"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = next_line(deadline - time.monotonic())
            if not line:
                break
            lines.append(json.loads(line))
            if lines[-1]["type"] == "oom":
                break
        assert any(e["type"] == "oom" and e["id"] == bundle.id for e in lines), \
            f"{runtime.name}: no oom event in {[e['type'] for e in lines]}"
    finally:
        events.kill()
        events.wait()
    assert runtime.status(bundle.id) == "running"  # only the hog died


def test_pids_limit_stops_a_fork_bomb(runtime, bundle):
    bundle.linux["resources"]["pids"] = {"limit": 10}
    bundle.config["root"]["readonly"] = False
    # the loop runs in a subshell (a refused fork ends a non-interactive sh); what
    # follows needs no fork: a redirection, then exec
    bundle.sh("(i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done) 2>/dev/null; "
              ": > /tmp/done; exec sleep 60")
    runtime.create(bundle)
    runtime.start(bundle.id)
    pid = runtime.state(bundle.id)["pid"]
    _wait_for(lambda: os.path.exists(f"/proc/{pid}/root/tmp/done"), what="the fork loop")
    pids_dir = _cgroup_dir(pid, "pids")
    assert pids_dir is not None
    assert int(_read(pids_dir, "pids.current")) <= 10
    assert int(_read(pids_dir, "pids.events").split()[1]) > 0  # refused forks
    listed = json.loads(runtime.call("ps", "--format", "json", bundle.id, check=True).stdout)
    assert 5 <= len(listed) <= 10
    stats = _stats(runtime, bundle.id)["pids"]
    assert stats["limit"] == 10 and stats["current"] <= 10


# -- freezer ----------------------------------------------------------------------------
def test_pause_freezes_and_resume_thaws(runtime, bundle):
    bundle.config["root"]["readonly"] = False
    bundle.sh("i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; "
              "mv /tmp/count.new /tmp/count; done")
    runtime.create(bundle)
    runtime.start(bundle.id)
    pid = runtime.state(bundle.id)["pid"]
    count_file = f"/proc/{pid}/root/tmp/count"

    def count() -> int:
        return int(_wait_for(lambda: _try_read(count_file), what="the counter"))

    first = count()
    _wait_for(lambda: count() > first, what="the counter to advance")
    runtime.call("pause", bundle.id, check=True)
    assert runtime.status(bundle.id) == "paused"
    frozen = count()
    time.sleep(0.5)
    assert count() == frozen, f"{runtime.name}: the counter advanced while paused"
    runtime.call("resume", bundle.id, check=True)
    assert runtime.status(bundle.id) == "running"
    _wait_for(lambda: count() > frozen, what="the counter to advance after resume")


def _try_read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def test_kill_all_a_paused_container(runtime, bundle):
    bundle.remove_namespace("pid")
    bundle.sh("sleep 60 & sleep 60 & wait")
    runtime.create(bundle)
    runtime.start(bundle.id)
    def listed() -> list[int] | None:
        pids = json.loads(runtime.call("ps", "--format", "json", bundle.id, check=True).stdout)
        return pids if len(pids) >= 3 else None

    pids = _wait_for(listed, what="three processes")
    runtime.call("pause", bundle.id, check=True)
    runtime.kill(bundle.id, "KILL", "--all")
    _wait_for(lambda: not any(_try_read(f"/proc/{p}/cmdline") for p in pids),
              what="every process to die")
    runtime.call("resume", bundle.id, check=False)
    runtime.wait_status(bundle.id, "stopped")


# -- update -----------------------------------------------------------------------------
def test_update_changes_limits_in_files_and_stats(runtime, bundle):
    bundle.linux["resources"].update({"memory": {"limit": 50 * MiB}, "pids": {"limit": 20},
                                      "cpu": {"shares": 1024}})
    pid = runtime.start_sleeping(bundle)
    runtime.call("update", "--memory", "30M", "--pids-limit", "15", "--cpu-share", "512",
                 "--cpu-quota", "50000", "--cpu-period", "100000", bundle.id, check=True)
    memory_dir, pids_dir, cpu_dir = (_cgroup_dir(pid, c) for c in ("memory", "pids", "cpu"))
    if os.path.exists(os.path.join(memory_dir, "memory.limit_in_bytes")):
        assert int(_read(memory_dir, "memory.limit_in_bytes")) == 30 * MiB
        assert _read(cpu_dir, "cpu.shares") == "512"
        assert _read(cpu_dir, "cpu.cfs_quota_us") == "50000"
    else:
        assert int(_read(memory_dir, "memory.max")) == 30 * MiB
        assert _read(cpu_dir, "cpu.max") == "50000 100000"
        assert _read(cpu_dir, "cpu.weight") == str(1 + (512 - 2) * 9999 // 262142)
    assert _read(pids_dir, "pids.max") == "15"
    stats = _stats(runtime, bundle.id)
    assert stats["memory"]["usage"]["limit"] == 30 * MiB
    assert stats["pids"]["limit"] == 15
    # -r with JSON on stdin, as runc-update(8) documents
    result = runtime.call("update", "-r", "-", bundle.id,
                          input=json.dumps({"memory": {"limit": 40 * MiB}}))
    assert result.returncode == 0, result
    assert _stats(runtime, bundle.id)["memory"]["usage"]["limit"] == 40 * MiB
    assert _stats(runtime, bundle.id)["pids"]["limit"] == 15  # untouched
    if runtime.is_corral:
        state = json.loads((runtime.root / bundle.id / "state.json").read_text())
        stored = state["config"]["linux"]["resources"]
        assert stored["memory"]["limit"] == 40 * MiB and stored["pids"]["limit"] == 15


def test_update_memory_and_swap_up_and_down(runtime, bundle):
    """v1 wants limit <= memsw at every moment: the writes are ordered (runc's
    setMemoryAndSwap); v2 stores swap alone (memory.swap.max = swap - limit)."""
    bundle.linux["resources"]["memory"] = {"limit": 50 * MiB, "swap": 50 * MiB}
    pid = runtime.start_sleeping(bundle)
    memory_dir = _cgroup_dir(pid, "memory")
    v1 = os.path.exists(os.path.join(memory_dir, "memory.limit_in_bytes"))
    if v1 and not os.path.exists(os.path.join(memory_dir, "memory.memsw.limit_in_bytes")):
        pytest.skip("no swap accounting (memory.memsw.limit_in_bytes)")
    for limit, swap in ((100, 200), (20, 40)):
        runtime.call("update", "--memory", f"{limit}M", "--memory-swap", f"{swap}M", bundle.id,
                     check=True)
        if v1:
            assert int(_read(memory_dir, "memory.limit_in_bytes")) == limit * MiB
            assert int(_read(memory_dir, "memory.memsw.limit_in_bytes")) == swap * MiB
        else:
            assert int(_read(memory_dir, "memory.max")) == limit * MiB
            assert int(_read(memory_dir, "memory.swap.max")) == (swap - limit) * MiB


def test_update_refuses_bad_values(runtime, bundle):
    bundle.linux["resources"]["pids"] = {"limit": 20}
    pid = runtime.start_sleeping(bundle)
    for args in (["--memory", "-5"], ["--pids-limit", "x"], ["--l3-cache-schema", "L3:0=f"]):
        result = runtime.call("update", *args, bundle.id)
        assert result.returncode != 0, f"{runtime.name} accepted {args}"
    assert _read(_cgroup_dir(pid, "pids"), "pids.max") == "20"


def test_update_bad_resources_file_names_the_field(runtime, bundle):
    bundle.linux["resources"]["pids"] = {"limit": 20}
    runtime.start_sleeping(bundle)
    result = runtime.call("update", "-r", "-", bundle.id,
                          input=json.dumps({"cpu": {"period": 10}}))
    assert result.returncode != 0
    if runtime.is_corral:
        assert "cpu.period" in result.stderr, result.stderr
    assert _stats(runtime, bundle.id)["pids"]["limit"] == 20


def test_events_stats_shape(runtime, bundle):
    runtime.start_sleeping(bundle)
    stats = _stats(runtime, bundle.id)
    for key in ("cpu", "memory", "pids", "blkio", "hugetlb"):
        assert key in stats, f"{runtime.name}: no {key} in {sorted(stats)}"
    assert stats["cpu"]["usage"]["total"] > 0
    assert stats["memory"]["usage"]["usage"] > 0
    assert stats["pids"]["current"] >= 1


# -- delete ------------------------------------------------------------------------------
def test_delete_removes_nested_cgroups(runtime, bundle):
    pid = runtime.start_sleeping(bundle)
    directories = [d for d in (_cgroup_dir(pid, c) for c in ("memory", "pids")) if d]
    for directory in directories:
        os.makedirs(os.path.join(directory, "nested", "deeper"))
    runtime.delete(bundle.id, force=True)
    for directory in directories:
        _wait_for(lambda d=directory: not os.path.exists(d), timeout=5,
                  what=f"{directory} to go")


# -- bad values: refused before anything exists ------------------------------------------
BAD_RESOURCES = [
    ("memory.limit", {"memory": {"limit": -5}}),
    ("memory.swappiness", {"memory": {"swappiness": 101}}),
    ("cpu.cpus", {"cpu": {"cpus": "0-4095"}}),
    ("pids.limit", {"pids": {"limit": -7}}),
    ("blockIO.weight", {"blockIO": {"weight": 5000}}),
    ("blockIO.throttleReadBpsDevice", {"blockIO": {"throttleReadBpsDevice": [
        {"major": 4095, "minor": 4095, "rate": 1024}]}}),
    ("unified", {"unified": {"../../cgroup.procs": "1"}}),
]
if not any("net_cls" in h.controllers for h in cgroups.detect()):
    # a controller the host lacks: config-linux.md "MUST generate an error"
    BAD_RESOURCES.append(("network.classID", {"network": {"classID": 0x100001}}))


@pytest.mark.parametrize("field,resources", BAD_RESOURCES, ids=[b[0] for b in BAD_RESOURCES])
def test_bad_resource_values_leave_nothing(runtime, bundle, field, resources):
    bundle.linux["resources"].update(resources)
    bundle.sh("sleep 30")
    result = runtime.create(bundle, check=False)
    if runtime.name == "runc" and result.returncode == 0:
        pytest.xfail(f"runc accepts {field}")
    assert result.returncode != 0
    if runtime.is_corral:
        assert field.split(".")[0] in result.stderr and field in result.stderr, result.stderr
    assert runtime.state_or_none(bundle.id) is None
    assert not (runtime.root / bundle.id).exists()
    _wait_for(lambda: not find_test_cgroups(bundle.id), timeout=5,
              what="the cgroup to be removed")


def test_unified_keys_on_the_v2_hierarchy(runtime, bundle):
    """Hybrid host: `unified` files go to the container's unified directory (corral);
    runc refuses `unified` on a v1 manager."""
    hierarchies = cgroups.detect()
    if not any(h.version == 2 for h in hierarchies):
        pytest.skip("no cgroup v2 hierarchy")
    if not runtime.is_corral:
        pytest.skip("runc refuses linux.resources.unified without a v2 manager")
    bundle.linux["resources"]["unified"] = {"cgroup.max.descendants": "3"}
    pid = runtime.start_sleeping(bundle)
    with open(f"/proc/{pid}/cgroup") as f:
        path = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    v2 = next(h for h in hierarchies if h.version == 2)
    assert _read(v2.mount_point + path, "cgroup.max.descendants") == "3"


# -- the cgroup v2 eBPF device filter -----------------------------------------------------
def _open_in_cgroup(directory: str, paths: list[str]) -> dict[str, int]:
    """Fork a child into `directory` (cgroup.procs) that opens each path; errno or 0."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                f.write("0")
            results = {}
            for path in paths:
                try:
                    os.close(os.open(path, os.O_RDONLY))
                    results[path] = 0
                except OSError as exc:
                    results[path] = exc.errno
            os.write(write_end, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 4096):
        data += chunk
    os.close(read_end)
    os.waitpid(child, 0)
    return json.loads(data)


def test_ebpf_device_filter_denies_a_device(tmp_path):
    from corral.linux.cgroups import devices, ebpf

    v2 = next((h for h in cgroups.detect() if h.version == 2), None)
    if v2 is None:
        pytest.skip("no cgroup v2 hierarchy to attach a device program to")
    directory = os.path.join(v2.mount_point, v2.own_path.lstrip("/"),
                             f"{ID_PREFIX}bpf-{uuid.uuid4().hex[:8]}")
    if not os.access(os.path.dirname(directory), os.W_OK):
        directory = os.path.join(v2.mount_point, os.path.basename(directory))
    os.mkdir(directory)
    try:
        # device nodes of our own, so nothing on the host is touched: null (1:3, allowed
        # by runc's defaults) and kmsg (1:11, not allowed)
        nodes = {"null": (1, 3), "kmsg": (1, 11)}
        for name, (major, minor) in nodes.items():
            os.mknod(tmp_path / name, 0o600 | 0o020000, os.makedev(major, minor))
        paths = [str(tmp_path / n) for n in nodes]
        assert _open_in_cgroup(directory, paths) == dict.fromkeys(paths, 0)  # no filter yet
        rules = devices.effective_rules({"devices": [{"allow": False, "access": "rwm"}]}, [])
        ebpf.attach_device_filter(directory, rules)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert len(ebpf.query(fd)) == 1
        finally:
            os.close(fd)
        opened = _open_in_cgroup(directory, paths)
        assert opened[str(tmp_path / "null")] == 0
        assert opened[str(tmp_path / "kmsg")] == 1  # EPERM
        # replacing the program: allow 1:11 read-only too; still exactly one program
        ebpf.attach_device_filter(directory, [*rules, {"type": "c", "major": 1, "minor": 11,
                                                       "access": "r", "allow": True}])
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert len(ebpf.query(fd)) == 1
        finally:
            os.close(fd)
        assert _open_in_cgroup(directory, paths) == dict.fromkeys(paths, 0)
    finally:
        os.rmdir(directory)


# -- the v2 manager on whatever v2 hierarchy the host has ---------------------------------------
def test_v2_manager_freeze_stats_and_cgroup_kill():
    """The pure-v2 code paths (cgroup.freeze with cgroup.events, cgroup.kill, pids, stats,
    controller checks) against a test cgroup in the v2 hierarchy; on a hybrid host that is
    the controller-less unified mount."""
    from corral.linux.cgroups import freezer
    from corral.linux.cgroups.common import ControllerMissing

    v2 = next((h for h in cgroups.detect() if h.version == 2), None)
    if v2 is None:
        pytest.skip("no cgroup v2 hierarchy")
    name = f"{ID_PREFIX}v2mgr-{uuid.uuid4().hex[:8]}"
    directory = os.path.join(v2.mount_point, v2.own_path.lstrip("/"), name)
    if not os.access(os.path.dirname(directory), os.W_OK):
        directory = os.path.join(v2.mount_point, name)
    cgroup = cgroups.Cgroup({"unified": directory})
    manager = cgroups.manager_for(cgroup)
    assert manager.version == 2
    available = set(_read(os.path.dirname(directory), "cgroup.controllers").split())
    if "pids" not in available:
        with pytest.raises(ControllerMissing, match=r"linux\.resources\.pids"):
            manager.check({"pids": {"limit": 5}})
    cgroup.create({})
    child = None
    try:
        # apply() of the v2 backend: `unified` files verbatim, device rules as eBPF
        from corral.linux.cgroups import ebpf

        manager.apply({"unified": {"cgroup.max.depth": "2"},
                       "devices": [{"allow": False, "access": "rwm"}]}, [])
        assert _read(directory, "cgroup.max.depth") == "2"
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert len(ebpf.query(fd)) == 1
        finally:
            os.close(fd)
        child = subprocess.Popen(["sh", "-c", (f"echo $$ > {directory}/cgroup.procs; "
                                  "exec sleep 60")])
        _wait_for(lambda: manager.pids() == [child.pid], what="the child in the cgroup")
        state = manager.freezer_state_file()
        assert state.endswith("cgroup.freeze")
        freezer.set_state(state, True)
        assert "frozen 1" in _read(directory, "cgroup.events")
        assert freezer.is_frozen(state)
        freezer.set_state(state, False)
        assert "frozen 0" in _read(directory, "cgroup.events")
        stats = manager.stats()
        assert "cpu" in stats and stats["cpu"]["usage"]["total"] >= 0
        manager.kill_all(9)  # cgroup.kill where the kernel has it
        assert child.wait(timeout=5) == -9
        _wait_for(lambda: manager.pids() == [], what="an empty cgroup")
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        cgroup.destroy()
    assert not os.path.exists(directory)
