"""run/create options observed from inside real containers, on corral-runtime and runc.

Each test builds a spec with `corral.engine.spec.build_spec` from ContainerConfig-like
options, runs busybox under the runtime and checks what the process sees: env, cwd,
user and groups, capabilities (CapEff), seccomp, mounts and their options, hostname,
a read-only root, cgroup limits, rlimits, devices, sysctls, --init's PID 1.
Temporary stores (corral-test-store-*) are removed after the module.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from tests.integration.engine_options_support import (
    CORRAL_RUNTIME,
    RUNC,
    SpecRunner,
    cleanup_root,
    make_store_with_busybox,
)

from corral.linux.capabilities import NUMBERS


@pytest.fixture(scope="module")
def store_root():
    if os.geteuid() != 0:
        pytest.skip("needs root: creates namespaces, mounts and cgroups")
    root, image = make_store_with_busybox()
    yield root, image
    cleanup_root(root)


@pytest.fixture(params=["corral", "runc"])
def runner(request, store_root):
    binary = CORRAL_RUNTIME if request.param == "corral" else RUNC
    if not os.path.exists(binary):
        pytest.skip(f"{binary} is not installed")
    root, image = store_root
    return SpecRunner(root, binary, image)


def sh(script: str, **config) -> dict:
    return {"command": ["sh", "-c", script], **config}


def ok(runner, config, **kw):
    result = runner.run(config, **kw)
    assert result.code == 0, f"exit {result.code}\n{result.out}\n{result.err}"
    return result


def status_field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(\S+)", text, re.MULTILINE)
    assert match, text
    return match.group(1)


def cap_bits(names) -> int:
    return sum(1 << NUMBERS[n] for n in names)


# -- process --------------------------------------------------------------------------


def test_env_and_env_file(runner, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\nOVERRIDE=file\n\n")
    r = ok(runner, sh("env", env=["OVERRIDE=flag", "PLAIN=1"], env_file=[str(env_file)]))
    lines = r.out.splitlines()
    assert "FROM_FILE=yes" in lines and "PLAIN=1" in lines and "OVERRIDE=flag" in lines
    assert any(line.startswith("PATH=") for line in lines)


def test_workdir_and_entrypoint(runner):
    r = ok(runner, {"entrypoint": ["sh", "-c"], "command": ["pwd; echo $0", "arg0"],
                    "workdir": "/tmp"})
    assert r.out.split() == ["/tmp", "arg0"]


def test_user_by_name_with_supplementary_groups(runner):
    def add_user(rootfs: Path) -> None:
        with open(rootfs / "etc/passwd", "a") as f:
            f.write("alice:x:1234:1234::/tmp:/bin/sh\n")
        with open(rootfs / "etc/group", "a") as f:
            f.write("alice:x:1234:\nproject:x:4321:bob,alice\n")
        text = (rootfs / "etc/group").read_text().replace("wheel:x:10:root",
                                                           "wheel:x:10:root,alice")
        (rootfs / "etc/group").write_text(text)

    r = ok(runner, sh("id -u; id -g; id -G; grep CapEff /proc/self/status", user="alice"),
           prepare=add_user)
    uid, gid, groups, capeff = r.out.splitlines()
    assert (uid, gid) == ("1234", "1234")
    assert set(groups.split()) == {"1234", "10", "4321"}
    assert int(capeff.split()[1], 16) == 0  # non-root: no effective capabilities


def test_user_numeric_uid_gid(runner):
    r = ok(runner, sh("id -u; id -g", user="4000:4001"))
    assert r.out.split() == ["4000", "4001"]


def test_unknown_user_is_an_error(runner):
    from corral.errors import NotFound

    with pytest.raises(NotFound, match="nosuchuser"):
        runner.run(sh("true", user="nosuchuser"))


def test_hostname_and_etc_files(runner):
    r = ok(runner, sh("hostname; cat /etc/hostname; grep web1 /etc/hosts; "
                      "grep ' /etc/resolv.conf ' /proc/mounts | wc -l",
                      hostname="web1", name="corral-test-web"))
    lines = r.out.splitlines()
    assert lines[0] == "web1" and lines[1] == "web1"
    assert "127.0.1.1" in lines[2] and "corral-test-web" in lines[2]
    assert lines[3] == "1"


# -- capabilities, seccomp, privileges ------------------------------------------------------


def test_default_capabilities(runner):
    from corral.engine.config_file import DEFAULT_CAPABILITIES

    r = ok(runner, sh("grep -E 'CapEff|CapBnd' /proc/self/status"))
    assert int(status_field(r.out, "CapEff"), 16) == cap_bits(DEFAULT_CAPABILITIES)
    assert int(status_field(r.out, "CapBnd"), 16) == cap_bits(DEFAULT_CAPABILITIES)


def test_cap_add_and_drop(runner):
    r = ok(runner, sh("grep CapEff /proc/self/status", cap_add=["net_admin"],
                      cap_drop=["CAP_CHOWN", "kill"]))
    eff = int(status_field(r.out, "CapEff"), 16)
    assert eff & (1 << NUMBERS["CAP_NET_ADMIN"])
    assert not eff & (1 << NUMBERS["CAP_CHOWN"]) and not eff & (1 << NUMBERS["CAP_KILL"])
    r = ok(runner, sh("grep CapEff /proc/self/status", cap_drop=["ALL"]))
    assert int(status_field(r.out, "CapEff"), 16) == 0
    r = ok(runner, sh("grep CapEff /proc/self/status", cap_drop=["ALL"], cap_add=["chown"]))
    assert int(status_field(r.out, "CapEff"), 16) == 1 << NUMBERS["CAP_CHOWN"]


def test_seccomp_default_blocks_and_unconfined_allows(runner):
    # swapoff(2) is refused by the default profile even with CAP_SYS_ADMIN (EPERM);
    # without a filter the kernel gets to look at the path (ENOENT)
    script = "grep '^Seccomp:' /proc/self/status; swapoff /nonexistent 2>&1; true"
    r = ok(runner, sh(script, cap_add=["SYS_ADMIN"]))
    assert status_field(r.out, "Seccomp") == "2"
    assert "Operation not permitted" in r.out
    r = ok(runner, sh(script, cap_add=["SYS_ADMIN"], security_opt=["seccomp=unconfined"]))
    assert status_field(r.out, "Seccomp") == "0"
    assert "No such file or directory" in r.out


def test_seccomp_profile_file(runner, tmp_path):
    import json

    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 13}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    r = ok(runner, sh("mkdir /tmp/x 2>&1; true", security_opt=[f"seccomp={path}"]))
    assert "Permission denied" in r.out


def test_no_new_privileges(runner):
    r = ok(runner, sh("grep NoNewPrivs /proc/self/status",
                      security_opt=["no-new-privileges"]))
    assert status_field(r.out, "NoNewPrivs") == "1"
    r = ok(runner, sh("grep NoNewPrivs /proc/self/status"))
    assert status_field(r.out, "NoNewPrivs") == "0"


def test_privileged(runner):
    from corral.engine.spec import HostInfo

    host_caps = HostInfo.detect().capabilities
    host_device = next((d for d in ("/dev/kmsg", "/dev/loop0", "/dev/tty0", "/dev/fuse")
                        if os.path.exists(d)), None)
    script = ("grep -E 'CapEff|Seccomp:' /proc/self/status; ls /dev; "
              "grep ' /sys ' /proc/mounts")
    r = ok(runner, sh(script, privileged=True))
    assert int(status_field(r.out, "CapEff"), 16) == cap_bits(host_caps)
    assert status_field(r.out, "Seccomp") == "0"
    if host_device:
        assert os.path.basename(host_device) in r.out.split()
    sys_line = next(line for line in r.out.splitlines() if " /sys " in line)
    assert " rw," in sys_line
    # not privileged: the host's devices are not there
    r = ok(runner, sh("ls /dev"))
    if host_device:
        assert os.path.basename(host_device) not in r.out.split()


def test_masked_paths_mask_and_unmask(runner):
    # /proc/timer_list is masked by default (a /dev/null bind mount: empty, a char device)
    check = "stat -c %F /proc/timer_list; wc -c < /etc/hostname"
    r = ok(runner, sh(check))
    assert r.out.splitlines()[0] == "character special file"
    assert r.out.splitlines()[1] != "0"
    r = ok(runner, sh(check, security_opt=["unmask=/proc/timer_list", "mask=/etc/hostname"]))
    assert r.out.splitlines() == ["regular empty file", "0"]


def test_init_is_pid_1(runner):
    r = ok(runner, sh("cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$", init=True))
    first, pid = r.out.splitlines()
    assert first.startswith("/run/corral-init -- sh -c")
    assert pid != "1"
    assert r.spec["annotations"]["io.corral.init"]


def test_init_passes_exit_code(runner):
    r = runner.run(sh("exit 7", init=True))
    assert r.code == 7


# -- mounts -------------------------------------------------------------------------------


def test_bind_mounts_rw_and_ro(runner, tmp_path):
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "file").write_text("host\n")
    r = ok(runner, sh("echo hello > /data/out; cat /ro/file; echo x > /ro/new 2>&1 || "
                      "echo refused",
                      volumes=[f"{rw}:/data", f"{ro}:/ro:ro"]))
    assert (rw / "out").read_text() == "hello\n"
    assert "host" in r.out and "refused" in r.out
    assert not (ro / "new").exists()


def test_missing_bind_source_is_an_error(runner, tmp_path):
    from corral.engine.spec import BindSourceNotFound

    with pytest.raises(BindSourceNotFound, match="does not exist"):
        runner.run(sh("true", volumes=[f"{tmp_path}/missing:/data"]))
    with pytest.raises(BindSourceNotFound):
        runner.run(sh("true", mounts=[f"type=bind,source={tmp_path}/missing,target=/d"]))


def test_tmpfs_options(runner):
    r = ok(runner, sh("grep ' /scratch ' /proc/mounts; grep ' /x ' /proc/mounts",
                      tmpfs=["/scratch:size=1m,mode=1700"],
                      mounts=["type=tmpfs,target=/x,tmpfs-size=2m"]))
    scratch, x = r.out.splitlines()
    assert scratch.split()[2] == "tmpfs"
    assert "size=1024k" in scratch and "mode=1700" in scratch and "noexec" in scratch
    assert "size=2048k" in x


def test_mount_flag_bind_readonly(runner, tmp_path):
    (tmp_path / "f").write_text("x\n")
    r = ok(runner, sh("cat /m/f; touch /m/g 2>/dev/null || echo refused",
                      mounts=[f"type=bind,source={tmp_path},target=/m,readonly"]))
    assert r.out.split() == ["x", "refused"]


def test_read_only_root(runner):
    r = ok(runner, sh("touch /newfile 2>/dev/null || echo refused; touch /tmp/ok /run/ok "
                      "/var/tmp/ok && echo tmp-writable; echo x > /etc/hostname && echo etc-ok",
                      read_only=True))
    assert r.out.split() == ["refused", "tmp-writable", "etc-ok"]


def test_shm_size(runner):
    r = ok(runner, sh("grep ' /dev/shm ' /proc/mounts", extra={"shm_size": "8m"}))
    assert "size=8192k" in r.out


# -- resources ----------------------------------------------------------------------------


def _cgroup_file(v1: str, v2: str) -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return f"/sys/fs/cgroup/{v2}"
    return f"/sys/fs/cgroup/{v1}"


def test_memory_pids_cpu_limits(runner):
    mem = _cgroup_file("memory/memory.limit_in_bytes", "memory.max")
    pids = _cgroup_file("pids/pids.max", "pids.max")
    cpu = _cgroup_file("cpu/cpu.cfs_quota_us", "cpu.max")
    r = ok(runner, sh(f"cat {mem} {pids} {cpu}", memory="64m", pids_limit=100, cpus="1.5"))
    lines = r.out.split()
    assert lines[0] == str(64 << 20)
    assert lines[1] == "100"
    assert lines[2] == "150000"


def test_default_pids_limit(runner):
    pids = _cgroup_file("pids/pids.max", "pids.max")
    r = ok(runner, sh(f"cat {pids}"))
    assert r.out.strip() == "2048"


def test_memory_swap(runner):
    from corral.engine.spec import HostInfo

    if not HostInfo.detect().swap_limit:
        pytest.skip("the host does not account swap (no memory.memsw / memory.swap.max)")
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        r = ok(runner, sh("cat /sys/fs/cgroup/memory.swap.max", memory="64m",
                          extra={"memory_swap": "96m"}))
        assert r.out.strip() == str(32 << 20)
    else:
        r = ok(runner, sh("cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
                          memory="64m", extra={"memory_swap": "96m"}))
        assert r.out.strip() == str(96 << 20)


def test_ulimits(runner):
    r = ok(runner, sh("ulimit -n; ulimit -Hn", ulimits=["nofile=1024:2048"]))
    assert r.out.split() == ["1024", "2048"]


def test_device(runner):
    r = ok(runner, sh("stat -c '%t %T %F' /dev/mynull; echo x > /dev/mynull && echo wrote",
                      devices=["/dev/null:/dev/mynull:rwm"]))
    assert r.out.splitlines() == ["1 3 character special file", "wrote"]


def test_missing_device_is_an_error(runner):
    from corral.errors import NotFound

    with pytest.raises(NotFound):
        runner.run(sh("true", devices=["/dev/corral-test-nope"]))


def test_sysctl(runner):
    r = ok(runner, sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ping_group_range",
                      extra={"sysctls": ["net.ipv4.ip_forward=1"]}))
    lines = r.out.splitlines()
    assert lines[0] == "1"
    assert lines[1].split() == ["0", "0"]


def test_sysctl_not_namespaced_is_refused(runner):
    from corral.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="namespaced"):
        runner.run(sh("true", extra={"sysctls": ["vm.swappiness=1"]}))


def test_spec_validates_for_many_options(runner, tmp_path):
    """Everything at once still validates and runs."""
    r = ok(runner, sh("true", env=["A=1"], workdir="/tmp", user="nobody", hostname="h",
                      read_only=True, memory="32m", cpus="0.5", pids_limit=50,
                      cap_add=["NET_RAW"], cap_drop=["MKNOD"], init=True,
                      security_opt=["no-new-privileges"], ulimits=["nproc=500"],
                      tmpfs=["/t"], volumes=[f"{tmp_path}:/h:ro"],
                      labels={"corral.test": "yes"}, stop_signal="SIGINT",
                      extra={"cpu_shares": 512, "shm_size": "16m"}))
    assert r.spec["annotations"]["corral.test"] == "yes"
    assert r.spec["annotations"]["io.corral.stopSignal"] == "SIGINT"




# -- through the CLI: `corral run` parses the flags, the engine builds the spec ---------------


def corral_cli(runner, *args, check=True):
    import subprocess

    from tests.integration.engine_options_support import CORRAL

    result = subprocess.run([CORRAL, "--root", str(runner.root), "--runtime", runner.runtime,
                             *args], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"corral {args}: {result.returncode}\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def test_cli_run_flags(runner, tmp_path):
    (tmp_path / "env").write_text("FROM_FILE=1\n")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro/f").write_text("host file\n")
    pids = _cgroup_file("pids/pids.max", "pids.max")
    mem = _cgroup_file("memory/memory.limit_in_bytes", "memory.max")
    script = ("echo $FROM_FILE $E; id -u; pwd; cat /h/f; touch /h/x 2>/dev/null || echo ro; "
              "touch /root-fs 2>/dev/null || echo rootro; grep -c ' /scratch tmpfs' /proc/mounts; "
              "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; "
              f"cat {pids} {mem}; ulimit -n; cat /proc/sys/net/core/somaxconn; "
              "grep ' /dev/shm ' /proc/mounts | grep -o 'size=[0-9]*k'; "
              "stat -c %t,%T /dev/n; tr '\\0' ' ' < /proc/1/cmdline | cut -d' ' -f1; hostname")
    r = corral_cli(runner, "run", "--rm", "--env-file", str(tmp_path / "env"), "-e", "E=2",
                   "-u", "65534", "-w", "/tmp", "-v", f"{tmp_path}/ro:/h:ro",
                   "--tmpfs", "/scratch:size=1m", "--read-only", "--cap-drop", "ALL",
                   "--security-opt", "no-new-privileges", "--pids-limit", "64",
                   "-m", "48m", "--ulimit", "nofile=512:512", "--sysctl",
                   "net.core.somaxconn=77", "--shm-size", "4m", "--device",
                   "/dev/null:/dev/n", "--init", "-h", "clihost", runner.image, "sh", "-c",
                   script)
    lines = r.stdout.splitlines()
    assert lines[:7] == ["1 2", "65534", "/tmp", "host file", "ro", "rootro", "1"]
    assert int(lines[7].split()[1], 16) == 0 and lines[8].split()[1] == "1"
    assert lines[9:14] == ["64", str(48 << 20), "512", "77", "size=4096k"]
    assert lines[14:] == ["1,3", "/run/corral-init", "clihost"]
    assert json.loads(corral_cli(runner, "ps", "-a", "--format", "json").stdout) in ([], None)


def test_cli_named_volume_and_privileged(runner):
    corral_cli(runner, "run", "--rm", "-v", "corral-test-clivol:/data", runner.image, "sh",
               "-c", "echo saved > /data/f")
    r = corral_cli(runner, "run", "--rm", "-v", "corral-test-clivol:/data:ro", runner.image,
                   "cat", "/data/f")
    assert r.stdout == "saved\n"
    created = corral_cli(runner, "create", "-v", "corral-test-clivol:/data", runner.image,
                         "true").stdout.strip()
    busy = corral_cli(runner, "volume", "rm", "corral-test-clivol", check=False)
    assert busy.returncode == 2
    corral_cli(runner, "rm", created)
    corral_cli(runner, "volume", "rm", "corral-test-clivol")
    r = corral_cli(runner, "run", "--rm", "--privileged", runner.image, "grep", "Seccomp:",
                   "/proc/self/status")
    assert r.stdout.split() == ["Seccomp:", "0"]


@pytest.mark.parametrize("flags,message", [
    (["-v", "/corral-test-missing-dir:/x"], "bind source path does not exist"),
    (["-v", "/anon", "-v", "corral-test-named:/n", "-v", "/corral-test-missing-dir:/x"],
     "bind source path does not exist"),
    (["-v", "/anon", "--init", "--init-path", "/corral-test-no-init"], "does not exist"),
    (["-v", "/tmp:relative"], "absolute"),
    (["--memory", "lots"], "invalid size"),
    (["--cap-add", "CAP_FLY"], "unknown capability"),
    (["--mount", "type=nfs,target=/x"], "not supported"),
    (["--device", "/dev/corral-test-none"], "no such file"),
    (["--sysctl", "vm.swappiness=1"], "namespaced"),
    (["--security-opt", "seccomp=/corral-test-none.json"], "does not exist"),
    (["-u", "nosuchuser"], "nosuchuser"),
])
def test_cli_bad_options_leave_nothing(runner, flags, message):
    r = corral_cli(runner, "run", "--rm", *flags, runner.image, "true", check=False)
    assert r.returncode == 125, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert json.loads(corral_cli(runner, "ps", "-a", "--format", "json").stdout) in ([], None)
    assert corral_cli(runner, "volume", "ls", "-q").stdout == ""


# -- namespaces and the cgroup parent, through the CLI -----------------------------------------


def _pid(runner, container: str) -> int:
    info = json.loads(corral_cli(runner, "inspect", container).stdout)
    return int(info[0]["State"]["Pid"])


def _ns_inode(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def _remove_cgroup(parent: str) -> None:
    """The parent in every hierarchy (the runtime removes the container's own)."""
    base = Path("/sys/fs/cgroup")
    for hierarchy in [base] + [d for d in base.iterdir() if d.is_dir()]:
        directory = hierarchy / parent
        if directory.is_dir():
            for leaf in (d for d in directory.iterdir() if d.is_dir()):
                leaf.rmdir()
            directory.rmdir()


def test_cli_cgroup_parent_places_the_process(runner):
    import uuid

    parent = f"corral-test-{uuid.uuid4().hex[:8]}"
    cid = None
    try:
        cid = corral_cli(runner, "run", "-d", "--cgroup-parent", parent, runner.image,
                         "sleep", "300").stdout.strip()
        lines = Path(f"/proc/{_pid(runner, cid)}/cgroup").read_text().splitlines()
        paths = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in lines}
        want = f"/{parent}/corral-{cid}"
        assert paths.get("") == want, lines  # the unified hierarchy (v2 or hybrid)
        assert all(p == want for c, p in paths.items() if c in ("memory", "pids", "cpu")), \
            lines
        spec = json.loads(corral_cli(runner, "inspect", cid).stdout)[0]["ContainerConfig"]
        assert spec["cgroup_parent"] == f"/{parent}"  # recorded: restart, inspect see it
    finally:
        if cid:
            corral_cli(runner, "rm", "-f", cid, check=False)
        _remove_cgroup(parent)
    assert not any((Path("/sys/fs/cgroup") / h / parent).exists()
                   for h in ["", *os.listdir("/sys/fs/cgroup")])


def test_cli_ipc_uts_pid_join_another_container(runner):
    target = corral_cli(runner, "run", "-d", "--name", "corral-test-nstarget", runner.image,
                        "sleep", "300").stdout.strip()
    joined = None
    try:
        joined = corral_cli(runner, "run", "-d", "--ipc", "container:corral-test-nstarget",
                            "--uts", f"container:{target[:12]}", "--pid",
                            f"container:{target}", runner.image, "sleep", "300"
                            ).stdout.strip()
        a, b = _pid(runner, target), _pid(runner, joined)
        for kind in ("ipc", "uts", "pid"):
            assert _ns_inode(a, kind) == _ns_inode(b, kind), kind
            assert _ns_inode(a, kind) != _ns_inode("self", kind), kind
        assert _ns_inode(a, "mnt") != _ns_inode(b, "mnt")
        # the same UTS: the target's hostname; the same PID namespace: both sleeps seen
        r = corral_cli(runner, "exec", joined, "sh", "-c", "hostname; ps -o args | grep -c "
                       "'^sleep 300'")
        assert r.stdout.split() == [target[:12], "2"]
        # host: the host's namespaces
        r = corral_cli(runner, "run", "--rm", "--ipc", "host", "--uts", "host",
                       runner.image, "sh", "-c", "readlink /proc/self/ns/ipc; hostname")
        assert r.stdout.split() == [os.readlink("/proc/self/ns/ipc"), os.uname().nodename]
        # ns:PATH: a namespace file
        r = corral_cli(runner, "run", "--rm", "--ipc", f"ns:/proc/{a}/ns/ipc", runner.image,
                       "readlink", "/proc/self/ns/ipc")
        assert r.stdout.strip() == os.readlink(f"/proc/{a}/ns/ipc")
    finally:
        for ident in (joined, target):
            if ident:
                corral_cli(runner, "rm", "-f", ident, check=False)


def test_cli_container_namespace_follows_a_restarted_target(runner):
    """--ipc/--pid container:X is resolved again at each start: after X restarts (a new
    init, a new pid), the joining container joins X's new namespaces."""
    target = corral_cli(runner, "run", "-d", "--name", "corral-test-nsrestart", runner.image,
                        "sleep", "300").stdout.strip()
    joined = None
    try:
        joined = corral_cli(runner, "create", "--ipc", "container:corral-test-nsrestart",
                            "--pid", f"container:{target}", runner.image, "sleep", "300"
                            ).stdout.strip()
        old = _pid(runner, target)
        corral_cli(runner, "restart", "-t", "0", target)
        a = _pid(runner, target)
        assert a != old  # a new init (namespace inode numbers may be reused: not compared)
        corral_cli(runner, "start", joined)
        b = _pid(runner, joined)
        for kind in ("ipc", "pid"):
            assert _ns_inode(a, kind) == _ns_inode(b, kind), kind
        # a target that is not running: the joining container does not start
        corral_cli(runner, "stop", "-t", "0", joined)
        corral_cli(runner, "stop", "-t", "0", target)
        r = corral_cli(runner, "start", joined, check=False)
        assert r.returncode != 0 and "corral-test-nsrestart" in r.stderr and \
            "not running" in r.stderr, r.stderr
    finally:
        for ident in (joined, target):
            if ident:
                corral_cli(runner, "rm", "-f", ident, check=False)


def test_cli_group_add_oom_score_adj_cpu_period(runner):
    cpu = _cgroup_file("cpu/cpu.cfs_period_us", "cpu.max")
    r = corral_cli(runner, "run", "--rm", "--group-add", "7", "--group-add", "wheel",
                   "--oom-score-adj", "123", "--cpu-period", "50000", "--cpu-quota", "25000",
                   runner.image, "sh", "-c", f"id -G; cat /proc/self/oom_score_adj; cat {cpu}")
    lines = r.stdout.splitlines()
    assert set(lines[0].split()) >= {"0", "7", "10"}  # the image's wheel is 10
    assert lines[1] == "123" and lines[2].split()[-1] == "50000"


@pytest.mark.parametrize("flags,message", [
    (["--ipc", "container:corral-test-nosuch"], "--ipc container:corral-test-nosuch: no such"),
    (["--pid", "ns:/corral-test-none"], "--pid ns:/corral-test-none: no such namespace file"),
    (["--uts", "sideways"], "--uts 'sideways'"),
    (["--cgroup-parent", "../corral-test-up"], "--cgroup-parent '../corral-test-up'"),
    (["--oom-score-adj", "5000"], "--oom-score-adj"),
    (["--group-add", "corral-test-nogroup"], "--group-add corral-test-nogroup: no such group"),
    (["-v", "/tmp:/x:rro,rw"], "rro (recursive read-only) conflicts with rw"),
])
def test_cli_bad_namespace_and_cgroup_options_leave_nothing(runner, flags, message):
    r = corral_cli(runner, "run", "--rm", *flags, runner.image, "true", check=False)
    assert r.returncode == 125, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert json.loads(corral_cli(runner, "ps", "-a", "--format", "json").stdout) in ([], None)
    assert not os.path.exists("/sys/fs/cgroup/unified/corral-test-up")


def test_cli_ipc_container_must_be_running(runner):
    stopped = corral_cli(runner, "create", runner.image, "true").stdout.strip()
    try:
        r = corral_cli(runner, "run", "--rm", "--ipc", f"container:{stopped}", runner.image,
                       "true", check=False)
        assert r.returncode == 125 and "not running" in r.stderr, r.stderr
        ps = json.loads(corral_cli(runner, "ps", "-a", "--format", "json").stdout)
        assert [c.get("Id", c.get("ID", "")) for c in ps] != [] and len(ps) == 1
    finally:
        corral_cli(runner, "rm", "-f", stopped, check=False)
