"""corral.linux.seccomp's validation and translation layer (no root, no filter loaded)."""

from __future__ import annotations

import json

import pytest

from corral.linux import seccomp
from corral.linux.seccomp import Rule, SeccompError, plan
from corral.oci import runtime_config

ERRNO, ALLOW, LOG = 0x00050000, 0x7FFF0000, 0x7FFC0000


def _section(*syscalls, default="SCMP_ACT_ALLOW", **extra) -> dict:
    return {"defaultAction": default, "syscalls": list(syscalls), **extra}


def test_actions_and_errno_values():
    assert seccomp.action_value("SCMP_ACT_ERRNO", None, "f") == ERRNO | 1  # EPERM
    assert seccomp.action_value("SCMP_ACT_ERRNO", 38, "f") == ERRNO | 38
    assert seccomp.action_value("SCMP_ACT_TRACE", None, "f") == 0x7FF00001
    assert seccomp.action_value("SCMP_ACT_KILL", None, "f") == 0
    assert seccomp.action_value("SCMP_ACT_KILL_PROCESS", None, "f") == 0x80000000
    assert seccomp.action_value("SCMP_ACT_NOTIFY", None, "f") == 0x7FC00000


def test_default_errno_ret():
    result = plan(_section(default="SCMP_ACT_ERRNO", defaultErrnoRet=38))
    assert result.default_action == ERRNO | 38


def test_rules_one_per_name_and_default_action_rules_dropped():
    result = plan(_section({"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_ERRNO"},
                           {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}))
    assert result.rules == [Rule("mkdir", ERRNO | 1, (), ""), Rule("rmdir", ERRNO | 1, (), "")]
    assert result.rules[0].field == "linux.seccomp.syscalls[0]"


def test_errno_rule_differs_from_errno_default_by_value():
    result = plan(_section({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                           {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
                           default="SCMP_ACT_ERRNO"))
    assert [rule.syscall for rule in result.rules] == ["mkdir"]


def test_args_on_different_indexes_are_anded_in_one_rule():
    args = [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 0o7, "valueTwo": 0o2, "op": "SCMP_CMP_MASKED_EQ"}]
    result = plan(_section({"names": ["socket"], "action": "SCMP_ACT_LOG", "args": args}))
    assert result.rules == [Rule("socket", LOG, ((0, 4, 2, 0), (1, 7, 0o7, 0o2)), "")]


def test_args_on_the_same_index_become_separate_rules():
    """runc's rule: two comparisons of one argument cannot be ANDed usefully."""
    args = [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 5, "op": "SCMP_CMP_GT"}]
    result = plan(_section({"names": ["personality"], "action": "SCMP_ACT_LOG", "args": args}))
    assert [rule.args for rule in result.rules] == [((0, 4, 8, 0),), ((0, 4, 0, 0),),
                                                    ((1, 6, 5, 0),)]


def test_architectures_and_flags():
    result = plan(_section(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                           flags=["SECCOMP_FILTER_FLAG_LOG"]))
    assert [name for _, name in result.architectures] == ["x86_64", "x86"]
    assert result.flags == [("linux.seccomp.flags[0]", "SECCOMP_FILTER_FLAG_LOG")]


def test_notify_with_listener():
    result = plan(_section({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                           listenerPath="/run/agent.sock", listenerMetadata="x"))
    assert result.uses_notify and result.listener_path == "/run/agent.sock"
    assert result.listener_metadata == "x"


@pytest.mark.parametrize(("section", "message"), [
    (_section({"names": ["a"], "action": "SCMP_ACT_FOO"}),
     "linux.seccomp.syscalls[0].action: unknown action 'SCMP_ACT_FOO'"),
    (_section(default="SCMP_ACT_BAR"), "linux.seccomp.defaultAction: unknown action"),
    (_section(architectures=["SCMP_ARCH_VAX"]),
     "linux.seccomp.architectures[0]: unknown architecture 'SCMP_ARCH_VAX'"),
    (_section(flags=["SECCOMP_FILTER_FLAG_X"]), "linux.seccomp.flags[0]: unknown flag"),
    (_section({"names": ["a"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}),
     "linux.seccomp.syscalls[0].action: errnoRet is only valid with"),
    (_section(default="SCMP_ACT_KILL", defaultErrnoRet=1),
     "linux.seccomp.defaultAction: errnoRet is only valid"),
    (_section({"names": ["a"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}),
     "linux.seccomp.syscalls[0].action: errno 70000"),
    (_section({"names": [], "action": "SCMP_ACT_ERRNO"}),
     "linux.seccomp.syscalls[0].names: must name at least one"),
    (_section({"names": ["a"], "action": "SCMP_ACT_ERRNO",
               "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[0].index: 6"),
    (_section({"names": ["a"], "action": "SCMP_ACT_ERRNO",
               "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}),
     "linux.seccomp.syscalls[0].args[0].op: unknown operator"),
    (_section({"names": ["a"], "action": "SCMP_ACT_ERRNO",
               "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[0].value"),
    (_section(default="SCMP_ACT_NOTIFY", listenerPath="/a"),
     "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default"),
    (_section({"names": ["write"], "action": "SCMP_ACT_NOTIFY"}, listenerPath="/a"),
     "linux.seccomp.syscalls[0]: SCMP_ACT_NOTIFY cannot be used for the write"),
    (_section({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}),
     "linux.seccomp.listenerPath: is required"),
    (_section({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}, listenerPath="rel.sock"),
     "linux.seccomp.listenerPath: 'rel.sock' is not an absolute path"),
    (_section(listenerMetadata="x"), "linux.seccomp.listenerMetadata: must not be set"),
])
def test_invalid_sections_name_the_field(section, message):
    with pytest.raises(SeccompError) as info:
        seccomp.validate(section)
    assert message in str(info.value)


def test_config_validation_includes_seccomp():
    config = {"ociVersion": "1.2.0", "root": {"path": "rootfs"},
              "process": {"args": ["sh"], "cwd": "/"},
              "linux": {"seccomp": _section({"names": ["a"], "action": "SCMP_ACT_ALLOW",
                                             "errnoRet": 3}, default="SCMP_ACT_ERRNO")}}
    with pytest.raises(runtime_config.ConfigError) as info:
        runtime_config.parse(json.dumps(config))
    assert "linux.seccomp.syscalls[0].action: errnoRet" in str(info.value)


def test_schema_rejects_unknown_action_naming_the_field():
    config = {"ociVersion": "1.2.0", "root": {"path": "rootfs"},
              "process": {"args": ["sh"], "cwd": "/"},
              "linux": {"seccomp": _section({"names": ["a"], "action": "SCMP_ACT_ALLOW"},
                                            {"names": ["b"], "action": "SCMP_ACT_FOO"})}}
    with pytest.raises(runtime_config.ConfigError) as info:
        runtime_config.parse(json.dumps(config))
    assert "linux.seccomp.syscalls[1].action" in str(info.value)


def test_seccomp_is_not_imported_without_a_seccomp_section():
    import subprocess
    import sys

    code = ("import sys; from corral.oci import runtime_config as r; "
            "r.check_semantics({'process': {'args': ['sh']}, 'linux': {}}); "
            "print('corral.linux.seccomp' in sys.modules, 'ctypes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split()[0] == "False"


def _program_in_child(program: seccomp.Program) -> int:
    """Load `program` in a forked child that then tries mkdir; its exit status is the
    errno mkdir failed with (0 if it succeeded)."""
    import os
    import tempfile

    target = tempfile.mkdtemp(prefix="corral-test-seccomp-")
    pid = os.fork()
    if pid == 0:
        try:
            from corral.linux import syscalls

            syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
            program.load()
            os.mkdir(os.path.join(target, "x"))
            os._exit(0)
        except OSError as exc:
            os._exit(exc.errno or 255)
        except BaseException:
            os._exit(254)
    _, status = os.waitpid(pid, 0)
    import shutil

    shutil.rmtree(target)
    return os.waitstatus_to_exitcode(status)


def test_generated_programs_are_cached_and_still_filter(tmp_path):
    section = _section({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                        "errnoRet": 38})
    first = seccomp.compile(section, cache_dir=str(tmp_path))
    cached = list(tmp_path.glob("*.bpf"))
    assert len(cached) == 1 and cached[0].read_bytes() == first.bpf
    second = seccomp.compile(section, cache_dir=str(tmp_path))
    assert second.bpf == first.bpf
    assert _program_in_child(second) == 38  # ENOSYS, as the rule says
    # a different profile gets its own entry; a damaged entry is regenerated
    other = seccomp.compile(_section({"names": ["mkdir", "mkdirat"],
                                      "action": "SCMP_ACT_ERRNO", "errnoRet": 1}),
                            cache_dir=str(tmp_path))
    assert other.bpf != first.bpf and len(list(tmp_path.glob("*.bpf"))) == 2
    cached[0].write_bytes(b"\0" * 5)
    again = seccomp.compile(section, cache_dir=str(tmp_path))
    assert again.bpf == first.bpf
    assert _program_in_child(again) == 38


def test_compile_reuses_the_plan_of_the_section_just_validated(monkeypatch, tmp_path):
    """create validates the config, then compiles it: one plan, not two; another section
    (or the same one compiled again) is planned afresh."""
    section = _section({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})
    calls = []
    real_plan = seccomp.plan
    monkeypatch.setattr(seccomp, "plan", lambda s: calls.append(s) or real_plan(s))
    seccomp.validate(section)
    first = seccomp.compile(section, cache_dir=str(tmp_path))
    assert calls == [section]
    assert first.plan.rules == [Rule("mkdir", ERRNO | 1, (), "")]
    equal = _section({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})
    seccomp.validate(section)
    seccomp.compile(equal, cache_dir=str(tmp_path))  # not the validated object: planned
    assert len(calls) == 3
    seccomp.compile(section, cache_dir=str(tmp_path))  # still the validated one: reused
    seccomp.compile(section, cache_dir=str(tmp_path))  # the reuse is spent: planned
    assert len(calls) == 4
