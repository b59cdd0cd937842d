"""linux.seccomp (config-linux.md#seccomp), corral-runtime against runc.

The container's processes are busybox applets: a blocked syscall shows up as the
applet's error message ("Function not implemented" for errno 38), a killing
action as the exit status 128+SIGSYS.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
from tests.support.bundles import find_test_cgroups

PODMAN_PROFILE = (Path(__file__).resolve().parents[3] / "shared" / "specs" / "containers"
                  / "common" / "pkg" / "seccomp" / "seccomp.json")
if not PODMAN_PROFILE.exists():  # outside this workspace: the identical copy corral ships
    PODMAN_PROFILE = (Path(__file__).resolve().parents[2] / "src" / "corral" / "engine"
                      / "data" / "seccomp.json")
SIGSYS_EXIT = 128 + 31
ENOSYS_TEXT = "Function not implemented"
EPERM_TEXT = "Operation not permitted"
HOST_ARCHES = {"x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
               "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}.get(os.uname().machine, [])
MKDIR = ["mkdir", "mkdirat"]


def _seccomp(bundle, default="SCMP_ACT_ALLOW", syscalls=(), **extra) -> dict:
    bundle.config["root"]["readonly"] = False
    section = {"defaultAction": default, "architectures": list(HOST_ARCHES),
               "syscalls": list(syscalls), **extra}
    bundle.linux["seccomp"] = section
    return section


def _rule(names, action, errno=None, args=None) -> dict:
    rule = {"names": list(names), "action": action}
    if errno is not None:
        rule["errnoRet"] = errno
    if args:
        rule["args"] = args
    return rule


def podman_profile(capabilities: list[str]) -> dict:
    """containers/common's seccomp.json (its own format) as an OCI linux.seccomp, the
    way podman converts it: the host's architecture with its sub-architectures, and
    only the entries whose arches/caps includes and excludes fit the container."""
    profile = json.loads(PODMAN_PROFILE.read_text())
    go_arch = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    native = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}[go_arch]
    arches = [native]
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            arches += entry["subArchitectures"]
    caps = set(capabilities)
    syscalls = []
    for entry in profile["syscalls"]:
        includes, excludes = entry.get("includes") or {}, entry.get("excludes") or {}
        if includes.get("arches") and go_arch not in includes["arches"]:
            continue
        if excludes.get("arches") and go_arch in excludes["arches"]:
            continue
        if includes.get("caps") and not set(includes["caps"]) <= caps:
            continue
        if excludes.get("caps") and set(excludes["caps"]) & caps:
            continue
        rule = {"names": entry["names"], "action": entry["action"]}
        if entry.get("args"):
            rule["args"] = entry["args"]
        if "errnoRet" in entry:
            rule["errnoRet"] = entry["errnoRet"]
        syscalls.append(rule)
    section = {"defaultAction": profile["defaultAction"], "architectures": arches,
               "syscalls": syscalls}
    if "defaultErrnoRet" in profile:
        section["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return section


def test_features_report_seccomp(runtime):
    result = runtime.call("features", check=True)
    seccomp = json.loads(result.stdout)["linux"]["seccomp"]
    assert seccomp["enabled"] is True
    assert {"SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_NOTIFY",
            "SCMP_ACT_LOG"} <= set(seccomp["actions"])
    assert "SCMP_CMP_MASKED_EQ" in seccomp["operators"]
    assert set(HOST_ARCHES) <= set(seccomp["archs"])


def test_errno_rule_returns_the_given_errno(runtime, bundle):
    _seccomp(bundle, syscalls=[_rule(MKDIR, "SCMP_ACT_ERRNO", errno=38)])
    bundle.sh("mkdir /tmp/blocked; echo rc=$?; touch /tmp/file && echo touched")
    result = runtime.run(bundle)
    assert result.returncode == 0, result
    assert ENOSYS_TEXT in result.stderr
    assert "rc=1" in result.stdout and "touched" in result.stdout
    assert not (bundle.rootfs / "tmp" / "blocked").exists()


def test_errno_rule_defaults_to_eperm(runtime, bundle):
    _seccomp(bundle, syscalls=[_rule(MKDIR, "SCMP_ACT_ERRNO")])
    bundle.sh("mkdir /tmp/blocked")
    result = runtime.run(bundle)
    assert result.returncode == 1 and EPERM_TEXT in result.stderr, result


@pytest.mark.parametrize("default_errno", [None, 38])
def test_default_errno_with_an_allow_list(runtime, bundle, default_errno):
    """defaultAction ERRNO: only the listed syscalls run (podman's allow-list minus
    mkdir); everything else fails with defaultErrnoRet (EPERM when unset)."""
    allowed = [name for entry in json.loads(PODMAN_PROFILE.read_text())["syscalls"]
               if entry["action"] == "SCMP_ACT_ALLOW" and not entry.get("includes")
               and not entry.get("excludes") and not entry.get("args")
               for name in entry["names"] if name not in MKDIR] + ["arch_prctl"]
    extra = {} if default_errno is None else {"defaultErrnoRet": default_errno}
    _seccomp(bundle, "SCMP_ACT_ERRNO", [_rule(allowed, "SCMP_ACT_ALLOW")], **extra)
    bundle.sh("echo allowed; mkdir /tmp/blocked")
    result = runtime.run(bundle)
    assert result.returncode == 1, result
    assert result.stdout == "allowed\n"
    assert (ENOSYS_TEXT if default_errno else EPERM_TEXT) in result.stderr


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL",
                                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"])
def test_killing_actions_end_the_process_with_sigsys(runtime, bundle, action):
    _seccomp(bundle, syscalls=[_rule(MKDIR, action)])
    bundle.args("mkdir", "/tmp/blocked")
    bundle.write()
    result = runtime.run(bundle)
    assert result.returncode == SIGSYS_EXIT, result
    assert not (bundle.rootfs / "tmp" / "blocked").exists()


def test_log_action_allows_the_call(runtime, bundle):
    _seccomp(bundle, syscalls=[_rule(MKDIR, "SCMP_ACT_LOG")])
    bundle.sh("mkdir /tmp/logged && echo made")
    result = runtime.run(bundle)
    assert result.returncode == 0 and result.stdout == "made\n", result


@pytest.mark.parametrize("flags", [["SECCOMP_FILTER_FLAG_LOG"], ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                                   ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]])
def test_filter_flags(runtime, bundle, flags):
    if not runtime.is_corral:
        pytest.skip("runc 1.1.5 refuses every flag: 'seccomp flags are not yet supported'")
    _seccomp(bundle, syscalls=[_rule(MKDIR, "SCMP_ACT_ERRNO", errno=38)], flags=flags)
    bundle.sh("mkdir /tmp/blocked")
    result = runtime.run(bundle)
    assert result.returncode == 1 and ENOSYS_TEXT in result.stderr, result


def test_flag_libseccomp_lacks_is_refused(runtime, bundle):
    """WAIT_KILLABLE_RECV needs libseccomp 2.6: refused at create with the field named."""
    if not runtime.is_corral:
        pytest.skip("runc 1.1.5 refuses every flag")
    from corral.linux import seccomp

    if seccomp.version() >= (2, 6, 0):
        pytest.skip("this host's libseccomp supports WAIT_KILLABLE_RECV")
    _seccomp(bundle, flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    bundle.write()
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0 and "linux.seccomp.flags[0]" in result.stderr, result
    assert runtime.state_or_none(bundle.id) is None


def test_argument_comparisons(runtime, bundle):
    """personality(PER_LINUX32) only is blocked; chmod with modes 0700 or 0600 (two
    comparisons of the same argument: either matches) or any world-writable mode
    (MASKED_EQ) is blocked, other modes pass."""
    def chmod_rules(op, value, value_two=0, second=None):
        rules = []
        for name, index in (("chmod", 1), ("fchmodat", 2), ("fchmodat2", 2)):
            args = [{"index": index, "op": op, "value": value, "valueTwo": value_two}]
            if second is not None:
                args.append({"index": index, "op": op, "value": second})
            rules.append(_rule([name], "SCMP_ACT_ERRNO", errno=38, args=args))
        return rules

    _seccomp(bundle, syscalls=[
        _rule(["personality"], "SCMP_ACT_ERRNO", errno=38,
              args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": 8}]),
        *chmod_rules("SCMP_CMP_EQ", 0o700, second=0o600),
        *chmod_rules("SCMP_CMP_MASKED_EQ", 0o002, 0o002),
    ])
    bundle.sh("linux64 true && echo linux64 ok; linux32 true || echo linux32 blocked; "
              "touch /tmp/f; for m in 755 700 600 640 757; do "
              "chmod $m /tmp/f 2>/dev/null && echo $m ok || echo $m blocked; done")
    result = runtime.run(bundle)
    assert result.returncode == 0, result
    assert result.stdout.split("\n") == [
        "linux64 ok", "linux32 blocked", "755 ok", "700 blocked", "600 blocked", "640 ok",
        "757 blocked", ""], result


def test_unknown_syscall_names_are_skipped(runtime, bundle):
    _seccomp(bundle, syscalls=[_rule(["corral_no_such_syscall", *MKDIR], "SCMP_ACT_ERRNO",
                                     errno=38)])
    bundle.sh("mkdir /tmp/blocked")
    result = runtime.run(bundle)
    assert result.returncode == 1 and ENOSYS_TEXT in result.stderr, result


def test_architectures_list(runtime, bundle):
    """The native architecture plus its compat ones; the filter holds for all."""
    _seccomp(bundle, syscalls=[_rule(MKDIR, "SCMP_ACT_ERRNO", errno=38)])
    bundle.linux["seccomp"]["architectures"] = list(reversed(HOST_ARCHES))
    bundle.sh("linux32 mkdir /tmp/blocked")
    result = runtime.run(bundle)
    assert result.returncode == 1 and ENOSYS_TEXT in result.stderr, result


def test_podman_default_profile(runtime, bundle):
    caps = bundle.process["capabilities"]["bounding"]
    bundle.config["root"]["readonly"] = False
    bundle.linux["seccomp"] = podman_profile(caps)
    bundle.sh("id -u; mkdir /tmp/d && echo made; linux32 uname -m; "
              "grep -E '^Seccomp:' /proc/self/status; swapon /dev/null 2>&1 | tail -1")
    result = runtime.run(bundle)
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[:3] == ["0", "made", "i686"] if os.uname().machine == "x86_64" else True
    assert "Seccomp:\t2" in lines, result
    assert EPERM_TEXT in lines[-1], result


def test_no_new_privileges_false_loads_before_dropping_capabilities(runtime, bundle):
    """Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, which the process
    does not keep: the runtime loads it before the drop, and does not set no_new_privs."""
    bundle.process["noNewPrivileges"] = False
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    _seccomp(bundle, syscalls=[_rule(MKDIR, "SCMP_ACT_ERRNO", errno=38)])
    bundle.sh("grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; mkdir /tmp/x")
    result = runtime.run(bundle)
    assert result.returncode == 1, result
    assert result.stdout.split() == ["NoNewPrivs:", "0", "Seccomp:", "2"], result
    assert ENOSYS_TEXT in result.stderr


def test_exec_gets_the_containers_filter(runtime, bundle, tmp_path):
    _seccomp(bundle, syscalls=[_rule(MKDIR, "SCMP_ACT_ERRNO", errno=38)])
    runtime.start_sleeping(bundle)
    result = runtime.exec(bundle.id, "mkdir", "/tmp/from-exec")
    assert result.returncode == 1 and ENOSYS_TEXT in result.stderr, result
    # a process.json without noNewPrivileges: loaded before the capability drop
    process = dict(bundle.process, args=["mkdir", "/tmp/from-exec-2"],
                   noNewPrivileges=False)
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    result = runtime.exec(bundle.id, flags=["--process", str(path)])
    assert result.returncode == 1 and ENOSYS_TEXT in result.stderr, result
    result = runtime.exec(bundle.id, "touch", "/tmp/allowed")
    assert result.returncode == 0, result


class _Agent:
    """A seccomp agent on a unix socket: takes one connection, records the container
    process state and the fds it carries, then answers the first notification with
    EACCES (SECCOMP_IOCTL_NOTIF_RECV/SEND) and closes the listener fd."""

    NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif), 80 bytes
    NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp), 24 bytes

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.server.settimeout(20)
        self.messages: list[dict] = []
        self.fd_counts: list[int] = []
        self.syscalls: list[int] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            while True:  # one JSON document, possibly in several writes
                try:
                    message = json.loads(data)
                    break
                except ValueError:
                    more = conn.recv(65536)
                    if not more:
                        raise
                    data += more
            self.messages.append(message)
            self.fd_counts.append(len(fds))
        for fd in fds:
            try:
                self._answer(fd)
            finally:
                os.close(fd)

    def _answer(self, fd: int) -> None:
        import fcntl
        import struct

        request = bytearray(80)
        fcntl.ioctl(fd, self.NOTIF_RECV, request, True)
        notification_id = struct.unpack_from("=Q", request)[0]
        self.syscalls.append(struct.unpack_from("=i", request, 16)[0])
        response = bytearray(struct.pack("=QqiI", notification_id, 0, -13, 0))
        fcntl.ioctl(fd, self.NOTIF_SEND, response, True)

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


def test_notify_sends_the_listener_fd(runtime, bundle, tmp_path):
    agent = _Agent(tmp_path / "agent.sock")
    try:
        _seccomp(bundle, syscalls=[_rule(MKDIR, "SCMP_ACT_NOTIFY")],
                 listenerPath=str(agent.path), listenerMetadata="corral-test-metadata")
        bundle.sh("mkdir /tmp/notified")
        result = runtime.run(bundle)
        agent.thread.join(10)
    finally:
        agent.close()
    assert result.returncode == 1 and "Permission denied" in result.stderr, result
    assert agent.fd_counts == [1] and len(agent.syscalls) == 1
    message = agent.messages[0]
    assert message["fds"] == ["seccompFd"]
    assert message["metadata"] == "corral-test-metadata"
    assert message["state"]["id"] == bundle.id
    assert message["pid"] == message["state"]["pid"] > 0


BAD_INPUT = [
    # (id, edit of the section, what the error names, does runc refuse it too)
    ("unknown-action", lambda s: s["syscalls"].append(_rule(["getcwd"], "SCMP_ACT_FOO")),
     "linux.seccomp.syscalls[1].action", True),
    ("unknown-operator", lambda s: s["syscalls"].append(_rule(
        ["getcwd"], "SCMP_ACT_ERRNO", args=[{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}])),
     "linux.seccomp.syscalls[1].args[0].op", True),
    ("unknown-arch", lambda s: s["architectures"].append("SCMP_ARCH_VAX"),
     "linux.seccomp.architectures", True),
    ("arch-unknown-to-libseccomp", lambda s: s["architectures"].append("SCMP_ARCH_LOONGARCH64"),
     "linux.seccomp.architectures", True),
    ("arg-index-6", lambda s: s["syscalls"].append(_rule(
        ["getcwd"], "SCMP_ACT_ERRNO", args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}])),
     "linux.seccomp.syscalls[1].args[0].index", True),
    ("notify-default", lambda s: s.update(defaultAction="SCMP_ACT_NOTIFY",
                                          listenerPath="/run/corral-test-none.sock"),
     "linux.seccomp.defaultAction", True),
    ("notify-without-listener", lambda s: s["syscalls"].append(
        _rule(["getcwd"], "SCMP_ACT_NOTIFY")), "linux.seccomp.listenerPath", False),
    ("listener-unreachable", lambda s: s.update(
        listenerPath="/run/corral-test-no-such.sock",
        syscalls=s["syscalls"] + [_rule(["getcwd"], "SCMP_ACT_NOTIFY")]),
     "linux.seccomp.listenerPath", True),
    ("errno-with-allow", lambda s: s["syscalls"].append(
        _rule(["getcwd"], "SCMP_ACT_ALLOW", errno=5)), "linux.seccomp.syscalls[1]", False),
    ("unknown-flag", lambda s: s.update(flags=["SECCOMP_FILTER_FLAG_FOO"]),
     "linux.seccomp.flags[0]", True),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_seccomp_fails_create_and_leaves_nothing(runtime, bundle, case):
    _, edit, field, runc_refuses = case
    if not runtime.is_corral and not runc_refuses:
        pytest.skip("runc 1.1 accepts this (it ignores the field); the spec requires "
                    "an error")
    section = _seccomp(bundle, default="SCMP_ACT_ALLOW",
                       syscalls=[_rule(MKDIR, "SCMP_ACT_ERRNO")])
    edit(section)
    bundle.write()
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0, result
    assert runtime.state_or_none(bundle.id) is None
    assert find_test_cgroups(bundle.id) == []
    if runtime.is_corral:
        assert field in result.stderr, result
        # only the cache of generated programs may remain (that profile part was valid)
        left = [p for p in runtime.root.iterdir() if p.name != ".seccomp"]
        assert not left, left
