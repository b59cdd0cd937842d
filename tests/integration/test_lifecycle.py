"""Lifecycle (runtime.md#lifecycle, #operations): create, start, state, kill, delete, run."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from tests.support import specs
from tests.support.bundles import find_test_cgroups


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_create_leaves_created_and_runtime_exits(runtime, bundle):
    bundle.sh("sleep 30")
    result = runtime.create(bundle)  # returns: the runtime process has exited
    assert result.returncode == 0, result
    state = runtime.state(bundle.id)
    assert state["status"] == "created"
    assert state["id"] == bundle.id
    assert state["pid"] > 0 and _alive(state["pid"])
    assert os.path.realpath(state["bundle"]) == os.path.realpath(bundle.path)


def test_start_runs_the_process_then_it_stops(runtime, bundle):
    bundle.sh("echo started; sleep 1")
    runtime.create(bundle)
    pid = runtime.state(bundle.id)["pid"]
    runtime.start(bundle.id)
    assert runtime.status(bundle.id) == "running"
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] in (b"sh", b"sleep")  # sh may exec its last command
    runtime.wait_status(bundle.id, "stopped", timeout=10)
    assert "started" in (bundle.path / "stdout.log").read_text()


def test_start_twice_fails(runtime, bundle):
    bundle.sh("sleep 30")
    runtime.create(bundle)
    runtime.start(bundle.id)
    again = runtime.start(bundle.id, check=False)
    assert again.returncode != 0
    assert runtime.status(bundle.id) == "running"


def test_delete_removes_the_container(runtime, bundle):
    bundle.sh("true")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    runtime.delete(bundle.id)
    after = runtime.call("state", bundle.id)
    assert after.returncode != 0
    assert bundle.id in after.stderr or "not exist" in after.stderr
    assert not (runtime.root / bundle.id).exists()
    assert find_test_cgroups(bundle.id) == []


def test_delete_created_container_kills_its_init(runtime, bundle):
    bundle.sh("sleep 30")
    runtime.create(bundle)
    pid = runtime.state(bundle.id)["pid"]
    runtime.delete(bundle.id, force=True)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert runtime.state_or_none(bundle.id) is None


@pytest.mark.parametrize("code", [0, 7, 42])
def test_run_returns_the_exit_code(runtime, bundle, code):
    bundle.sh(f"echo out; echo err >&2; exit {code}")
    result = runtime.run(bundle)
    assert result.returncode == code, result
    assert "out" in result.stdout
    assert "err" in result.stderr
    assert runtime.state_or_none(bundle.id) is None  # run deletes when done


def test_run_exit_code_of_a_killed_process(runtime, bundle):
    bundle.sh("sh -c 'kill -9 $$'; exit $?")  # the child dies of SIGKILL; sh exits 128+9
    result = runtime.run(bundle)
    assert result.returncode == 128 + 9, result


def test_run_detach(runtime, bundle):
    bundle.sh("sleep 30")
    result = runtime.call_detached("run", "--detach", "--bundle", str(bundle.path), bundle.id,
                                   log_dir=bundle.path)
    assert result.returncode == 0, result
    assert runtime.status(bundle.id) == "running"


def test_delete_running_needs_force(runtime, bundle):
    bundle.sh("sleep 30")
    runtime.create(bundle)
    runtime.start(bundle.id)
    pid = runtime.state(bundle.id)["pid"]
    refused = runtime.delete(bundle.id, check=False)
    assert refused.returncode != 0
    assert runtime.status(bundle.id) == "running"
    runtime.delete(bundle.id, force=True)
    assert runtime.state_or_none(bundle.id) is None
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert find_test_cgroups(bundle.id) == []


@pytest.mark.parametrize("sig", ["KILL", "SIGKILL", "9", "TERM", "15"])
def test_kill_with_name_or_number(runtime, bundle, sig):
    # sh as PID 1 ignores TERM unless it traps it: trap, then report.
    bundle.sh("trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done")
    runtime.create(bundle)
    runtime.start(bundle.id)
    deadline = time.monotonic() + 5
    while "ready" not in (bundle.path / "stdout.log").read_text():
        assert time.monotonic() < deadline, "the container never became ready"
        time.sleep(0.05)
    runtime.kill(bundle.id, sig)
    runtime.wait_status(bundle.id, "stopped", timeout=10)
    if sig in ("TERM", "15"):
        deadline = time.monotonic() + 5
        while "got-term" not in (bundle.path / "stdout.log").read_text():
            assert time.monotonic() < deadline, "the TERM trap never ran"
            time.sleep(0.05)


def test_kill_default_signal_is_term(runtime, bundle):
    bundle.sh("trap 'exit 3' TERM; while true; do sleep 0.1; done")
    runtime.create(bundle)
    runtime.start(bundle.id)
    time.sleep(0.3)
    runtime.kill(bundle.id)
    runtime.wait_status(bundle.id, "stopped", timeout=10)


def test_kill_unknown_signal_fails(runtime, bundle):
    bundle.sh("sleep 30")
    runtime.create(bundle)
    runtime.start(bundle.id)
    result = runtime.kill(bundle.id, "SIGBOGUS", check=False)
    assert result.returncode != 0
    assert runtime.status(bundle.id) == "running"


def test_state_matches_the_spec_schema(runtime, bundle):
    validator = specs.validator("state-schema.json")
    bundle.config["annotations"] = {"org.corral.test": "yes"}
    bundle.sh("sleep 30")
    runtime.create(bundle)
    created = runtime.state(bundle.id)
    validator.validate(created)
    assert created["status"] == "created"
    assert created["annotations"]["org.corral.test"] == "yes"
    # runc's additions, which engines read (podman: "created" for the start time)
    assert {"rootfs", "created", "owner"} <= set(created)
    assert os.path.realpath(created["rootfs"]) == os.path.realpath(bundle.rootfs)
    runtime.start(bundle.id)
    running = runtime.state(bundle.id)
    validator.validate(running)
    assert running["status"] == "running" and running["pid"] == created["pid"]
    runtime.kill(bundle.id, "KILL")
    runtime.wait_status(bundle.id, "stopped")
    stopped = runtime.state(bundle.id)
    validator.validate(stopped)


def test_state_of_unknown_container_fails(runtime):
    result = runtime.call("state", "corral-test-does-not-exist")
    assert result.returncode != 0
    if runtime.is_corral:  # runc says only "container does not exist"
        assert "corral-test-does-not-exist" in result.stderr
    assert "not exist" in result.stderr


def test_list_table_and_json(runtime, make_bundle):
    first, second = make_bundle("a"), make_bundle("b")
    for b in (first, second):
        b.sh("sleep 30")
        runtime.create(b)
    runtime.start(second.id)
    table = runtime.call("list", check=True).stdout
    lines = table.strip().splitlines()
    assert lines[0].split()[:3] == ["ID", "PID", "STATUS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[first.id][2] == "created"
    assert rows[second.id][2] == "running"
    entries = {e["id"]: e for e in json.loads(runtime.call("list", "--format", "json",
                                                           check=True).stdout)}
    assert set(entries) == {first.id, second.id}
    assert entries[first.id]["status"] == "created"
    assert entries[second.id]["status"] == "running"
    assert entries[second.id]["pid"] == runtime.state(second.id)["pid"]
    assert os.path.realpath(entries[first.id]["bundle"]) == os.path.realpath(first.path)
    quiet = runtime.call("list", "-q", check=True).stdout.split()
    assert sorted(quiet) == sorted([first.id, second.id])


def test_list_empty_root(runtime):
    result = runtime.call("list", "--format", "json", check=True)
    assert json.loads(result.stdout or "null") in (None, [])


def test_ps_json_lists_the_init(runtime, bundle):
    bundle.sh("sleep 30")
    runtime.create(bundle)
    runtime.start(bundle.id)
    pid = runtime.state(bundle.id)["pid"]
    pids = json.loads(runtime.call("ps", "--format", "json", bundle.id, check=True).stdout)
    assert pid in pids
    table = runtime.call("ps", bundle.id, check=True).stdout
    assert "PID" in table.splitlines()[0]
    assert str(pid) in table


def test_ps_shows_exec_processes(runtime, bundle):
    bundle.sh("sleep 30")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.call_detached("exec", "--detach", bundle.id, "sleep", "29", log_dir=bundle.path,
                          check=True)
    deadline = time.monotonic() + 5
    while True:
        pids = json.loads(runtime.call("ps", "--format", "json", bundle.id, check=True).stdout)
        if len(pids) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(pids) >= 2


def test_pause_and_resume(runtime, bundle):
    bundle.sh("sleep 30")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.call("pause", bundle.id, check=True)
    assert runtime.status(bundle.id) == "paused"
    pid = runtime.state(bundle.id)["pid"]
    with open(f"/proc/{pid}/status") as f:
        assert any(line.startswith("State:") for line in f)
    runtime.call("resume", bundle.id, check=True)
    assert runtime.status(bundle.id) == "running"


def test_pid_file_written(runtime, bundle, tmp_path):
    bundle.sh("sleep 30")
    pid_file = tmp_path / "init.pid"
    runtime.create(bundle, "--pid-file", str(pid_file))
    assert int(pid_file.read_text()) == runtime.state(bundle.id)["pid"]


def test_stopped_container_pid_reported(runtime, bundle):
    bundle.sh("true")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    state = runtime.state(bundle.id)
    assert state["status"] == "stopped"
    assert not state.get("pid")  # spec: pid is only REQUIRED while created/running


def test_sigkill_sent_to_state(runtime, bundle):
    bundle.sh("sleep 30")
    runtime.create(bundle)
    runtime.kill(bundle.id, "KILL")  # kill works on a created container
    runtime.wait_status(bundle.id, "stopped")
    assert signal.SIGKILL == 9


def test_delete_created_without_force(runtime, bundle):
    """A created container (its init still waiting for start) can be deleted plainly."""
    bundle.sh("sleep 30")
    runtime.create(bundle)
    pid = runtime.state(bundle.id)["pid"]
    runtime.delete(bundle.id)
    assert runtime.state_or_none(bundle.id) is None
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_start_stopped_container_fails(runtime, bundle):
    bundle.sh("true")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    assert runtime.start(bundle.id, check=False).returncode != 0


def test_init_killed_from_the_host_is_stopped(runtime, bundle):
    pid = runtime.start_sleeping(bundle)
    os.kill(pid, signal.SIGKILL)
    runtime.wait_status(bundle.id, "stopped")
    entries = json.loads(runtime.call("list", "--format", "json", check=True).stdout)
    assert [e["status"] for e in entries if e["id"] == bundle.id] == ["stopped"]
    runtime.delete(bundle.id)
    assert runtime.state_or_none(bundle.id) is None


def test_run_no_pivot(runtime, bundle):
    out = runtime.probe(bundle, "ls /bin/busybox; cat /proc/self/mountinfo | wc -l", "--no-pivot")
    assert out.split()[0] == "/bin/busybox"



def _popen_run(runtime, bundle):
    import subprocess

    runtime.created.append(bundle.id)
    return subprocess.Popen(runtime.argv("run", "--bundle", str(bundle.path), bundle.id),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_run_forwards_signals(runtime, bundle):
    bundle.sh("trap 'echo got-term; exit 3' TERM; echo ready; "
              "while true; do sleep 0.1; done")
    proc = _popen_run(runtime, bundle)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "got-term" in out
    assert proc.returncode == 3


def test_run_reports_a_kill_from_outside(runtime, bundle):
    bundle.sh("echo ready; sleep 30")
    proc = _popen_run(runtime, bundle)
    try:
        assert proc.stdout.readline() == "ready\n"
        runtime.kill(bundle.id, "KILL")
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + 9


def test_run_keep_leaves_a_stopped_container(runtime, bundle):
    bundle.sh("exit 2")
    result = runtime.run(bundle, "--keep")
    assert result.returncode == 2, result
    assert runtime.status(bundle.id) == "stopped"
    runtime.delete(bundle.id)


@pytest.mark.parametrize("sig", ["TERM", "KILL"])
def test_kill_a_created_container(runtime, bundle, sig):
    bundle.sh("echo should-not-run")
    runtime.create(bundle)
    runtime.kill(bundle.id, sig)
    runtime.wait_status(bundle.id, "stopped")
    assert "should-not-run" not in (bundle.path / "stdout.log").read_text()
    runtime.delete(bundle.id)
    assert find_test_cgroups(bundle.id) == []
