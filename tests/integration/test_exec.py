"""`exec` (runc-exec(8)): a new process in a running container's namespaces and cgroup."""

from __future__ import annotations

import json
import os
import time

import pytest
from tests.support.bundles import ns_link
from tests.support.console import ConsoleSocket


@pytest.fixture
def running(runtime, bundle):
    """A running container (sleeping init); returns (bundle, init pid)."""
    bundle.process["env"] = ["PATH=/bin", "FROM_CONFIG=yes"]
    pid = runtime.start_sleeping(bundle)
    return bundle, pid


def test_exec_output_and_exit_code(runtime, running):
    bundle, _ = running
    result = runtime.exec(bundle.id, "sh", "-c", "echo hello; echo oops >&2; exit 5")
    assert result.returncode == 5, result
    assert result.stdout == "hello\n"
    assert "oops" in result.stderr
    assert runtime.exec(bundle.id, "true").returncode == 0


def test_exec_sees_the_container(runtime, running):
    bundle, pid = running
    result = runtime.exec(bundle.id, "sh", "-c",
                          "ps -o pid,args; for n in net mnt pid; do readlink /proc/self/ns/$n; "
                          "done; echo $FROM_CONFIG; cat /proc/1/cmdline | "
                          "tr '\\0' ' '")
    assert result.returncode == 0, result
    lines = result.stdout.strip().splitlines()
    table = [line.split() for line in lines if line.split()[0].isdigit()]
    assert ["1", "sleep", "60"] in [row[:3] for row in table]
    assert ns_link(pid, "net") in lines
    assert ns_link(pid, "mnt") in lines
    assert "yes" in lines  # the config's env is the base for exec
    assert lines[-1].strip() == "sleep 60"


def test_exec_joins_the_pid_namespace_for_children(runtime, running):
    bundle, pid = running
    result = runtime.exec(bundle.id, "sh", "-c", "readlink /proc/self/ns/pid_for_children; "
                                                 "readlink /proc/self/ns/pid")
    links = result.stdout.split()
    assert links[0] == links[1] == ns_link(pid, "pid")


def test_exec_in_the_cgroup(runtime, running):
    bundle, pid = running
    with open(f"/proc/{pid}/cgroup") as f:
        init_cgroups = {line.split(":", 2)[1]: line.strip().split(":", 2)[2] for line in f}
    result = runtime.exec(bundle.id, "sh", "-c", "echo $$; sleep 0.5")
    assert result.returncode == 0, result
    pids = json.loads(runtime.call("ps", "--format", "json", bundle.id, check=True).stdout)
    assert pids == [pid]  # the exec'd process left the cgroup when it exited
    result = runtime.call_detached("exec", "--detach", bundle.id, "sleep", "5",
                                   log_dir=bundle.path, check=True)
    deadline = time.monotonic() + 5
    while True:
        pids = json.loads(runtime.call("ps", "--format", "json", bundle.id, check=True).stdout)
        if len(pids) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    other = [p for p in pids if p != pid]
    assert other, pids
    with open(f"/proc/{other[0]}/cgroup") as f:
        exec_cgroups = {line.split(":", 2)[1]: line.strip().split(":", 2)[2] for line in f}
    assert exec_cgroups["memory"] == init_cgroups["memory"]


def test_exec_with_flags(runtime, running):
    bundle, _ = running
    result = runtime.exec(bundle.id, "sh", "-c", "echo $EXTRA $(pwd) $(id -u) $(id -g) $(id -G)",
                          flags=["--env", "EXTRA=1", "--cwd", "/tmp", "--user", "1000:1000",
                                 "--additional-gids", "2000"])
    assert result.returncode == 0, result
    assert result.stdout.split()[:4] == ["1", "/tmp", "1000", "1000"]
    assert "2000" in result.stdout.split()[4:]


def test_exec_process_json(runtime, running, tmp_path):
    bundle, _ = running
    process = {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1000},
        "args": ["sh", "-c", ("echo $CORRAL_P $(pwd) $(id -u); "
                              "grep NoNewPrivs /proc/self/status; exit 3")],
        "env": ["PATH=/bin", "CORRAL_P=from-json"],
        "cwd": "/home/corral",
        "noNewPrivileges": True,
    }
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    result = runtime.exec(bundle.id, flags=["--process", str(path)])
    assert result.returncode == 3, result
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "from-json /home/corral 1000"
    assert lines[1].split() == ["NoNewPrivs:", "1"]


def test_exec_process_json_invalid(runtime, running, tmp_path):
    bundle, _ = running
    path = tmp_path / "process.json"
    path.write_text('{"args": "not-a-list", "cwd": "/"}')
    result = runtime.exec(bundle.id, flags=["--process", str(path)])
    assert result.returncode != 0
    if runtime.is_corral:
        assert "args" in result.stderr


def test_exec_detach_pid_file(runtime, running, tmp_path):
    bundle, pid = running
    pid_file = tmp_path / "exec.pid"
    result = runtime.call_detached("exec", "--detach", "--pid-file", str(pid_file), bundle.id,
                                   "sh", "-c", "echo detached-out; sleep 30",
                                   log_dir=bundle.path)
    assert result.returncode == 0, result
    exec_pid = int(pid_file.read_text())
    assert exec_pid != pid
    assert os.readlink(f"/proc/{exec_pid}/ns/pid") == ns_link(pid, "pid")
    deadline = time.monotonic() + 5
    while "detached-out" not in (bundle.path / "stdout.log").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = json.loads(runtime.call("ps", "--format", "json", bundle.id, check=True).stdout)
    assert exec_pid in pids


def test_exec_tty_console_socket(runtime, running, tmp_path):
    bundle, _ = running
    console = ConsoleSocket(tmp_path / "exec-console.sock")
    try:
        result = runtime.call_detached(
            "exec", "--detach", "--tty", "--console-socket", console.path, bundle.id,
            "sh", "-c", "tty; test -t 0 && echo exec-is-tty; read x; echo got:$x",
            log_dir=bundle.path)
        assert result.returncode == 0, result
        console.wait_master()
        console.wait_for("exec-is-tty")
        console.write(b"abc\n")
        out = console.wait_for("got:abc")
    finally:
        console.close()
    assert "/dev/pts/" in out


def test_exec_in_stopped_container_fails(runtime, bundle):
    bundle.sh("true")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    result = runtime.exec(bundle.id, "true")
    assert result.returncode != 0
    if runtime.is_corral:
        assert "stopped" in result.stderr or "not running" in result.stderr


def test_exec_in_unknown_container_fails(runtime):
    result = runtime.exec("corral-test-missing", "true")
    assert result.returncode != 0


def test_exec_missing_program(runtime, running):
    bundle, _ = running
    result = runtime.exec(bundle.id, "corral-no-such-program")
    assert result.returncode != 0
    assert "corral-no-such-program" in result.stderr
    assert runtime.status(bundle.id) == "running"


def test_exec_capabilities_follow_the_config(runtime, running):
    bundle, _ = running
    result = runtime.exec(bundle.id, "grep", "CapEff", "/proc/self/status")
    init = runtime.exec(bundle.id, "sh", "-c", "grep CapEff /proc/1/status")
    assert result.stdout.split()[1] == init.stdout.split()[1]


def test_exec_preserve_fds(runtime, running, tmp_path):
    import subprocess

    bundle, _ = running
    (tmp_path / "f.txt").write_text("exec-fd-3\n")
    argv = runtime.argv("exec", "--preserve-fds", "1", bundle.id, "sh", "-c", "cat <&3")
    proc = subprocess.run(["/bin/sh", "-c", 'exec "$@" 3<"$0"', str(tmp_path / "f.txt"), *argv],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "exec-fd-3\n"


def test_exec_cap_flag_adds_a_capability(runtime, running):
    bundle, _ = running
    result = runtime.exec(bundle.id, "grep", "CapEff", "/proc/self/status",
                          flags=["--cap", "CAP_SYS_ADMIN"])
    assert result.returncode == 0, result
    assert int(result.stdout.split()[1], 16) & (1 << 21)



def test_exec_process_json_rlimits_and_caps(runtime, running, tmp_path):
    bundle, _ = running
    process = {
        "terminal": False, "user": {"uid": 0, "gid": 0, "additionalGids": [2000]},
        "args": ["sh", "-c", "ulimit -n; grep CapEff /proc/self/status; id -G"],
        "env": ["PATH=/bin"], "cwd": "/",
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}],
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                         "permitted": ["CAP_KILL"]},
    }
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    result = runtime.exec(bundle.id, flags=["--process", str(path)])
    assert result.returncode == 0, result
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "123"
    assert int(lines[1].split()[1], 16) == 1 << 5
    assert "2000" in lines[2].split()


def test_exec_process_json_console_size(runtime, running, tmp_path):
    bundle, _ = running
    process = {"terminal": True, "consoleSize": {"height": 21, "width": 77},
               "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "stty size; sleep 0.3"],
               "env": ["PATH=/bin"], "cwd": "/"}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    console = ConsoleSocket(tmp_path / "size.sock")
    try:
        result = runtime.call_detached("exec", "--detach", "--console-socket", console.path,
                                       "--process", str(path), bundle.id,
                                       log_dir=bundle.path)
        assert result.returncode == 0, result
        console.wait_for("21 77")
    finally:
        console.close()
