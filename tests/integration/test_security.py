"""Isolation checks: no host file descriptor reaches the container, and a cwd through
a leaked fd (CVE-2024-21626, "Leaky Vessels") cannot leave the container's root."""

from __future__ import annotations

import os
import subprocess

import pytest


@pytest.fixture
def leaked_dir_fd(tmp_path):
    """An inheritable (no CLOEXEC) fd of a host directory holding a secret file."""
    host_dir = tmp_path / "host-secret-dir"
    host_dir.mkdir()
    (host_dir / "corral-host-secret").write_text("TOP-SECRET\n")
    fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)
    yield fd
    os.close(fd)


@pytest.fixture
def leaked_file_fd(tmp_path):
    path = tmp_path / "leaked.txt"
    path.write_text("LEAKED-CONTENT\n")
    fd = os.open(path, os.O_RDONLY)
    os.set_inheritable(fd, True)
    yield fd
    os.close(fd)


def _fds(out: str) -> set[str]:
    return set(out.split())


def test_no_host_fd_leaks_into_the_container(runtime, bundle, leaked_file_fd, leaked_dir_fd):
    bundle.sh("ls /proc/self/fd")
    result = runtime.run(bundle, pass_fds=(leaked_file_fd, leaked_dir_fd))
    assert result.returncode == 0, result
    # 0-2 and the directory ls itself is reading
    assert _fds(result.stdout) == {"0", "1", "2", "3"}, result.stdout


def test_no_fd_leaks_into_the_init_of_a_created_container(runtime, bundle, leaked_file_fd):
    bundle.sh("sleep 30")
    runtime.create(bundle, pass_fds=(leaked_file_fd,))
    runtime.start(bundle.id)
    pid = runtime.state(bundle.id)["pid"]
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]


def test_no_fd_leaks_into_exec(runtime, bundle, leaked_file_fd):
    runtime.start_sleeping(bundle)
    result = runtime.call("exec", bundle.id, "ls", "/proc/self/fd",
                          pass_fds=(leaked_file_fd,))
    assert result.returncode == 0, result
    assert _fds(result.stdout) == {"0", "1", "2", "3"}, result.stdout


def test_preserve_fds_passes_exactly_the_asked_fds(runtime, bundle, tmp_path):
    (tmp_path / "three.txt").write_text("via-fd-3\n")
    bundle.sh("cat <&3; ls /proc/self/fd")
    argv = runtime.argv("run", "--preserve-fds", "1", "--bundle", str(bundle.path), bundle.id)
    runtime.created.append(bundle.id)
    # the shell puts the file on fd 3 (and a stray fd 4) for the runtime
    proc = subprocess.run(["/bin/sh", "-c", 'exec "$@" 3<"$0" 4<"$0"',
                           str(tmp_path / "three.txt"), *argv],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines[0] == "via-fd-3"
    assert set(lines[1:]) == {"0", "1", "2", "3", "4"}  # 4: the directory ls reads


def _assert_no_escape(result) -> None:
    assert "TOP-SECRET" not in result.stdout
    if result.returncode == 0:
        where = result.stdout.splitlines()[0] if result.stdout else ""
        assert "host-secret-dir" not in where


@pytest.mark.parametrize("depth", [0, 3])
def test_cwd_through_a_leaked_fd_stays_inside(runtime, bundle, leaked_dir_fd, depth):
    up = "/".join([".."] * depth)
    cwd = f"/proc/self/fd/{leaked_dir_fd}" + (f"/{up}" if up else "")
    bundle.process["cwd"] = cwd
    bundle.sh("pwd; cat corral-host-secret 2>/dev/null; "
              f"cat {'../' * 8}tmp/*/host-secret-dir/corral-host-secret 2>/dev/null; true")
    result = runtime.run(bundle, pass_fds=(leaked_dir_fd,))
    _assert_no_escape(result)


def test_exec_cwd_through_a_leaked_fd_stays_inside(runtime, bundle, leaked_dir_fd):
    runtime.start_sleeping(bundle)
    result = runtime.call("exec", "--cwd", f"/proc/self/fd/{leaked_dir_fd}", bundle.id,
                          "sh", "-c", "pwd; cat corral-host-secret 2>/dev/null; true",
                          pass_fds=(leaked_dir_fd,))
    _assert_no_escape(result)


def test_container_cannot_see_host_processes(runtime, bundle):
    out = runtime.probe(bundle, "ls /proc | grep -c '^[0-9]'")
    assert int(out) <= 3  # sh/ls, grep and maybe the shell's subshell


def test_proc_self_exe_is_not_the_runtime(runtime, bundle):
    out = runtime.probe(bundle, "readlink /proc/1/exe")
    assert out.strip() == "/bin/busybox"


def test_host_root_is_not_reachable(runtime, bundle):
    marker = f"/tmp/corral-test-host-marker-{os.getpid()}"
    with open(marker, "w") as f:
        f.write("host\n")
    try:
        out = runtime.probe(bundle, f"ls {marker} 2>/dev/null || echo absent; "
                                    "ls /proc/1/root/ | grep -c corral-test-host || true")
    finally:
        os.unlink(marker)
    assert out.splitlines()[0] == "absent"


def test_seccomp_is_enforced_or_refused(runtime, bundle):
    """A runtime that cannot apply linux.seccomp must refuse the config, never run the
    container unconfined (config-linux.md#seccomp)."""
    bundle.config["root"]["readonly"] = False
    bundle.linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}],
    }
    bundle.sh("mkdir /tmp/corral-seccomp 2>/dev/null && echo made || echo blocked")
    result = runtime.run(bundle)
    if result.returncode != 0:
        assert runtime.is_corral, result  # runc applies seccomp
        assert "seccomp" in result.stderr
        assert runtime.state_or_none(bundle.id) is None
        return
    assert result.stdout == "blocked\n"
