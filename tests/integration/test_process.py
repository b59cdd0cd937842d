"""The container process (config.md#process): args, env, cwd, user, umask, rlimits,
oomScoreAdj, noNewPrivileges, capabilities, terminal, stdio."""

from __future__ import annotations

import os
import resource

import pytest
from tests.support.bundles import find_test_cgroups
from tests.support.console import ConsoleSocket

CAP_BITS = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
            "CAP_SYS_ADMIN": 21, "CAP_AUDIT_WRITE": 29}


def _status_fields(text: str) -> dict[str, str]:
    return {key.strip(): value.strip() for key, _, value in
            (line.partition(":") for line in text.splitlines()) if value}


def test_args_env_cwd(runtime, bundle):
    bundle.process["args"] = ["sh", "-c", 'echo "$0|$1|$FOO|$CORRAL_EMPTY|$(pwd)"', "zero",
                              "one two"]
    bundle.process["env"] = ["PATH=/bin", "FOO=bar baz", "CORRAL_EMPTY="]
    bundle.process["cwd"] = "/tmp"
    bundle.write()
    out = runtime.probe(bundle)
    assert out == "zero|one two|bar baz||/tmp\n"


def test_env_is_exactly_the_configured_one(runtime, bundle):
    bundle.process["env"] = ["PATH=/bin", "ONLY=this"]
    out = runtime.probe(bundle, "env")
    names = {line.split("=", 1)[0] for line in out.strip().splitlines()}
    # the shell adds PWD/SHLVL; nothing from the runtime's environment leaks in
    assert {"PATH", "ONLY"} <= names
    assert not names & {"PYTEST_CURRENT_TEST", "VIRTUAL_ENV", "HOME_OF_HOST"}
    assert "PYTEST_CURRENT_TEST" in os.environ


def test_args_with_absolute_program(runtime, bundle):
    bundle.process["args"] = ["/bin/echo", "direct"]
    bundle.write()
    assert runtime.probe(bundle) == "direct\n"


def test_missing_program_fails_create(runtime, bundle):
    bundle.process["args"] = ["corral-no-such-program"]
    bundle.write()
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    assert "corral-no-such-program" in result.stderr
    assert runtime.state_or_none(bundle.id) is None
    assert not (runtime.root / bundle.id).exists()
    assert find_test_cgroups(bundle.id) == []


def test_user_and_groups(runtime, bundle):
    bundle.process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [100, 2000]}
    out = runtime.probe(bundle, "id -u; id -g; id -G; grep -E '^(Uid|Gid|Groups):' "
                                "/proc/self/status")
    lines = out.strip().splitlines()
    assert lines[0] == "1000" and lines[1] == "1000"
    assert {"100", "2000"} <= set(lines[2].split())
    status = _status_fields("\n".join(lines[3:]))
    assert status["Uid"].split() == ["1000"] * 4
    assert status["Gid"].split() == ["1000"] * 4
    assert sorted(status["Groups"].split()) == ["100", "2000"]


def test_user_cannot_write_root_owned_files(runtime, bundle):
    bundle.config["root"]["readonly"] = False
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    out = runtime.probe(bundle, "touch /etc/corral 2>/dev/null && echo wrote || echo refused; "
                                "touch /home/corral/mine && stat -c %u:%g /home/corral/mine")
    assert out.split() == ["refused", "1000:1000"]


@pytest.mark.parametrize("umask, expected", [(None, "0022"), (0o077, "0077"), (0o002, "0002")])
def test_umask(runtime, bundle, umask, expected):
    bundle.config["root"]["readonly"] = False
    if umask is not None:
        bundle.process["user"]["umask"] = umask
    out = runtime.probe(bundle, "umask; touch /tmp/f; stat -c %a /tmp/f")
    assert out.split()[0] == expected
    assert out.split()[1] == format(0o666 & ~int(expected, 8), "o")


def test_rlimits(runtime, bundle):
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
                                 {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400}]
    out = runtime.probe(bundle, "ulimit -n; grep -E 'Max (open files|processes)' "
                                "/proc/self/limits")
    lines = out.strip().splitlines()
    assert lines[0] == "512"
    limits = {line[:26].strip(): line[26:].split()[:2] for line in lines[1:]}
    assert limits["Max open files"] == ["512", "1024"]
    assert limits["Max processes"] == ["300", "400"]


def test_rlimit_above_host_hard_limit_fails_cleanly(runtime, bundle):
    host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if host_hard == resource.RLIM_INFINITY:
        pytest.skip("the host's RLIMIT_NOFILE hard limit is unlimited")
    try:  # with CAP_SYS_RESOURCE, raising it would work: then nothing to test
        resource.prlimit(os.getpid(), resource.RLIMIT_NOFILE, (host_hard, host_hard + 1))
    except (PermissionError, ValueError, OSError):
        pass
    else:
        resource.prlimit(os.getpid(), resource.RLIMIT_NOFILE, (host_hard, host_hard))
        pytest.skip("this host grants CAP_SYS_RESOURCE: raising a hard limit succeeds")
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024,
                                  "hard": host_hard * 4}]
    bundle.sh("echo should-not-run")
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert "RLIMIT_NOFILE" in result.stderr, result
        assert "Traceback" not in result.stderr
    assert runtime.state_or_none(bundle.id) is None
    assert not (runtime.root / bundle.id).exists()
    assert find_test_cgroups(bundle.id) == []
    assert "should-not-run" not in (bundle.path / "stdout.log").read_text()


def test_oom_score_adj(runtime, bundle):
    bundle.process["oomScoreAdj"] = 500
    assert runtime.probe(bundle, "cat /proc/self/oom_score_adj") == "500\n"


@pytest.mark.parametrize("enabled, expected", [(True, "1"), (False, "0")])
def test_no_new_privileges(runtime, bundle, enabled, expected):
    bundle.process["noNewPrivileges"] = enabled
    out = runtime.probe(bundle, "grep NoNewPrivs /proc/self/status")
    assert out.split() == ["NoNewPrivs:", expected]


def _mask(names) -> int:
    return sum(1 << CAP_BITS[name] for name in names)


def test_capabilities_default_set(runtime, bundle):
    names = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bundle.process["capabilities"] = {kind: list(names) for kind in
                                      ("bounding", "effective", "permitted")}
    out = runtime.probe(bundle, "grep ^Cap /proc/self/status")
    caps = {k: int(v, 16) for k, v in _status_fields(out).items()}
    assert caps["CapEff"] == _mask(names)
    assert caps["CapPrm"] == _mask(names)
    assert caps["CapBnd"] == _mask(names)
    assert caps["CapInh"] == 0 and caps["CapAmb"] == 0


def test_capabilities_ambient_and_observable_effect(runtime, bundle):
    names = ["CAP_CHOWN", "CAP_KILL"]
    bundle.process["capabilities"] = {kind: list(names) for kind in
                                      ("bounding", "effective", "permitted", "inheritable",
                                       "ambient")}
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["root"]["readonly"] = False
    # as uid 1000, CAP_CHOWN (kept through exec by the ambient set) lets us chown
    out = runtime.probe(bundle, "grep ^Cap /proc/self/status; touch /tmp/f; "
                                "chown 0:0 /tmp/f && echo chowned")
    caps = {k: int(v, 16) for k, v in _status_fields(out).items() if k.startswith("Cap")}
    assert caps["CapEff"] == _mask(names)
    assert caps["CapAmb"] == _mask(names)
    assert "chowned" in out


def test_dropped_capability_is_enforced(runtime, bundle):
    names = ["CAP_KILL"]
    bundle.process["capabilities"] = {kind: list(names) for kind in
                                      ("bounding", "effective", "permitted")}
    bundle.config["root"]["readonly"] = False
    out = runtime.probe(bundle, "touch /tmp/f; chown 1000 /tmp/f 2>/dev/null && echo chowned "
                                "|| echo refused; hostname corral-x 2>/dev/null && echo set "
                                "|| echo nohost")
    assert out.split() == ["refused", "nohost"]


def test_terminal_through_console_socket(runtime, bundle, tmp_path):
    bundle.process["terminal"] = True
    bundle.process["consoleSize"] = {"height": 33, "width": 101}
    bundle.sh("tty; test -t 0 && test -t 1 && echo stdin-is-tty; stty size; "
              "read line; echo got:$line")
    console = ConsoleSocket(tmp_path / "console.sock")
    try:
        runtime.create(bundle, "--console-socket", console.path)
        console.wait_master()
        runtime.start(bundle.id)
        console.wait_for("33 101")
        console.write(b"typed-in\n")
        out = console.wait_for("got:typed-in")
        runtime.wait_status(bundle.id, "stopped")
    finally:
        console.close()
    assert "/dev/pts/" in out
    assert "stdin-is-tty" in out


def test_terminal_without_console_socket_fails(runtime, bundle):
    bundle.process["terminal"] = True
    bundle.sh("true")
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert "console" in result.stderr
    assert runtime.state_or_none(bundle.id) is None


def test_no_terminal_means_no_tty(runtime, bundle):
    out = runtime.probe(bundle, "test -t 0 && echo tty || echo no-tty")
    assert out == "no-tty\n"


def test_stdio_passthrough(runtime, bundle):
    bundle.sh("read line; echo out:$line; echo err:$line >&2")
    result = runtime.call("run", "--bundle", str(bundle.path), bundle.id, input="piped\n")
    assert result.returncode == 0, result
    assert result.stdout == "out:piped\n"
    assert "err:piped" in result.stderr


def test_stdio_of_a_created_container_goes_to_the_creators_fds(runtime, bundle):
    bundle.sh("echo to-stdout; echo to-stderr >&2")
    runtime.create(bundle)
    runtime.start(bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    assert (bundle.path / "stdout.log").read_text() == "to-stdout\n"
    assert "to-stderr" in (bundle.path / "stderr.log").read_text()


def test_no_additional_gids_means_no_groups(runtime, bundle):
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    out = runtime.probe(bundle, "grep ^Groups: /proc/self/status")
    assert out.split() == ["Groups:"]


def test_soft_rlimit_above_hard_fails(runtime, bundle):
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]
    bundle.sh("echo should-not-run")
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert "rlimits" in result.stderr or "RLIMIT_NOFILE" in result.stderr
    assert runtime.state_or_none(bundle.id) is None
    assert find_test_cgroups(bundle.id) == []


def test_program_not_executable_fails_create(runtime, bundle):
    (bundle.rootfs / "not-exec").write_text("#!/bin/sh\necho hi\n")
    os.chmod(bundle.rootfs / "not-exec", 0o644)
    bundle.process["args"] = ["/not-exec"]
    bundle.write()
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    assert "not-exec" in result.stderr
    assert runtime.state_or_none(bundle.id) is None


def test_pid_file_relative_to_the_callers_cwd(runtime, bundle, tmp_path):
    bundle.sh("sleep 30")
    result = runtime.call_detached("create", "--bundle", str(bundle.path), "--pid-file",
                                   "rel.pid", bundle.id, log_dir=bundle.path, cwd=str(tmp_path))
    assert result.returncode == 0, result
    assert int((tmp_path / "rel.pid").read_text()) == runtime.state(bundle.id)["pid"]


def test_run_detach_with_console_socket(runtime, bundle, tmp_path):
    """runc takes --console-socket for `run` only with --detach."""
    bundle.process["terminal"] = True
    bundle.sh("test -t 1 && echo run-tty; read x; echo got:$x")
    console = ConsoleSocket(tmp_path / "run.sock")
    try:
        result = runtime.call_detached("run", "--detach", "--console-socket", console.path,
                                       "--bundle", str(bundle.path), bundle.id,
                                       log_dir=bundle.path)
        assert result.returncode == 0, result
        console.wait_for("run-tty")
        console.write(b"zz\n")
        console.wait_for("got:zz")
        runtime.wait_status(bundle.id, "stopped")
    finally:
        console.close()


def test_large_environment(runtime, bundle):
    bundle.process["env"] = ["PATH=/bin"] + [f"CORRAL_V{i}={'x' * 100}" for i in range(500)]
    out = runtime.probe(bundle, "env | grep -c ^CORRAL_V; echo ${#CORRAL_V499}")
    assert out.split() == ["500", "100"]


def test_missing_cwd_is_created(runtime, bundle):
    """runc creates a missing cwd (before making the root read-only)."""
    bundle.process["cwd"] = "/corral/new/dir"
    out = runtime.probe(bundle, "pwd")
    assert out == "/corral/new/dir\n"


def test_exec_env_override(runtime, bundle):
    bundle.process["env"] = ["PATH=/bin", "A=config", "B=config"]
    runtime.start_sleeping(bundle)
    result = runtime.exec(bundle.id, "sh", "-c", "echo $A $B", flags=["--env", "A=flag"])
    assert result.stdout == "flag config\n"
