"""Containment seen from inside the container, for corral-runtime and runc alike.

Every test starts from the default `spec` config (three capabilities, no_new_privs,
the usual masked and read-only paths, a deny-all device cgroup) and asserts an
effect the container itself observes: a capability missing from /proc/self/status
AND the operation it guards refused; host processes invisible; mount, module
loading, /proc/sys, /proc/sysrq-trigger and /sys writes refused; devices the
cgroup does not grant unopenable; masked paths empty; setuid gain blocked by
no_new_privs; ambient capabilities held by a non-root user.

Writes to host-global files only ever open them with O_TRUNC and write nothing
(`: > path`): harmless should the protection be missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from corral.linux.capabilities import NUMBERS as CAP_BITS

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
ALL_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def _mask(names) -> int:
    return sum(1 << CAP_BITS[name] for name in names)


def _caps(out: str) -> dict[str, int]:
    found = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap") and value.strip():
            found[key] = int(value.strip(), 16)
    return found


def _host_bounding() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    raise AssertionError("no CapBnd in /proc/self/status")


def _grant(bundle, *names: str, sets=("bounding", "effective", "permitted")) -> None:
    for kind in sets:
        current = bundle.process["capabilities"].setdefault(kind, [])
        current.extend(name for name in names if name not in current)


# -- capabilities -------------------------------------------------------------------

def test_default_capabilities_are_exactly_the_three(runtime, bundle):
    out = runtime.probe(bundle, "grep ^Cap /proc/self/status")
    caps = _caps(out)
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == _mask(DEFAULT_CAPS), out
    # `spec` lists them in ambient but not inheritable: the kernel refuses ambient
    # capabilities that are not inheritable, and both runtimes skip them
    assert caps["CapInh"] == 0 and caps["CapAmb"] == 0, out


# (capability, a command it alone permits here). Each runs where it would succeed
# with the capability: the granted case proves the refusal is the capability's doing.
PRIVILEGED = {
    "CAP_CHOWN": "touch /dev/shm/f && chown 1000 /dev/shm/f",
    "CAP_MKNOD": "mknod /dev/corral-null c 1 3",
    "CAP_SYS_ADMIN": "hostname corral-renamed",  # our own uts namespace
    "CAP_SYS_CHROOT": "chroot / true",
    "CAP_FOWNER": "chmod 0777 /dev/shm/owned-by-nobody",
}
SETUP = "touch /dev/shm/owned-by-nobody; chown 65534 /dev/shm/owned-by-nobody 2>/dev/null; "


@pytest.mark.parametrize("capability", sorted(PRIVILEGED))
@pytest.mark.parametrize("granted", [False, True], ids=["dropped", "granted"])
def test_dropped_capability_is_missing_and_refused(runtime, bundle, capability, granted):
    if granted:
        _grant(bundle, capability)
    else:
        assert capability not in bundle.process["capabilities"]["bounding"]
    if capability == "CAP_FOWNER":
        _grant(bundle, "CAP_CHOWN")  # to give the file away first
    out = runtime.probe(bundle, "grep ^Cap /proc/self/status; " + SETUP
                        + f"({PRIVILEGED[capability]}) 2>/dev/null && echo ALLOWED "
                        "|| echo REFUSED")
    caps = _caps(out)
    bit = 1 << CAP_BITS[capability]
    if granted:
        assert caps["CapEff"] & bit and caps["CapBnd"] & bit, out
        assert out.splitlines()[-1] == "ALLOWED", out
    else:
        assert not caps["CapEff"] & bit and not caps["CapBnd"] & bit, out
        assert out.splitlines()[-1] == "REFUSED", out


def test_ambient_capabilities_of_a_non_root_user(runtime, bundle):
    """CapAmb holds what is permitted AND inheritable; a name missing from the
    inheritable set is skipped (the kernel's rule), not an error, in both runtimes."""
    caps = bundle.process["capabilities"]
    for kind in ALL_SETS:
        caps[kind] = ["CAP_CHOWN", "CAP_KILL"]
    caps["ambient"].append("CAP_NET_BIND_SERVICE")  # not permitted nor inheritable
    caps["inheritable"] = ["CAP_CHOWN"]  # so CAP_KILL cannot be ambient either
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    out = runtime.probe(bundle, "grep ^Cap /proc/self/status; id -u; "
                                "touch /dev/shm/f && chown 0 /dev/shm/f && echo CHOWNED")
    found = _caps(out)
    assert found["CapAmb"] == _mask(["CAP_CHOWN"]), out
    assert found["CapInh"] == _mask(["CAP_CHOWN"]), out
    # a non-root user's exec keeps only the ambient set (capabilities(7))
    assert found["CapEff"] == found["CapPrm"] == _mask(["CAP_CHOWN"]), out
    assert "1000" in out.split() and "CHOWNED" in out.split(), out


def test_no_ambient_set_means_no_capabilities_for_a_non_root_user(runtime, bundle):
    caps = bundle.process["capabilities"]
    for kind in ("bounding", "effective", "permitted", "inheritable"):
        caps[kind] = ["CAP_CHOWN"]
    caps.pop("ambient", None)
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    out = runtime.probe(bundle, "grep ^Cap /proc/self/status; "
                                "touch /dev/shm/f; chown 0 /dev/shm/f 2>/dev/null "
                                "&& echo CHOWNED || echo REFUSED")
    found = _caps(out)
    assert found["CapEff"] == found["CapPrm"] == found["CapAmb"] == 0, out
    assert out.split()[-1] == "REFUSED", out


def _host_lacks(name: str) -> bool:
    return not _host_bounding() & (1 << CAP_BITS[name])


MISSING_ON_HOST = "CAP_SYS_RESOURCE"


@pytest.mark.skipif(not _host_lacks(MISSING_ON_HOST),
                    reason=f"this host's bounding set has {MISSING_ON_HOST}")
@pytest.mark.parametrize("kind", ["effective", "permitted", "inheritable"])
def test_capability_the_host_lacks_fails_create(runtime, bundle, kind):
    """runc 1.1 cannot capset(2) what it does not hold: "unable to apply caps:
    operation not permitted". corral-runtime fails the same way, naming the field and
    the capability; neither leaves a container behind."""
    bundle.process["capabilities"].setdefault(kind, []).append(MISSING_ON_HOST)
    bundle.sh("echo RAN")
    result = runtime.run(bundle)
    assert result.returncode != 0 and "RAN" not in result.stdout, result
    if runtime.is_corral:
        assert f"process.capabilities.{kind}" in result.stderr, result
        assert MISSING_ON_HOST in result.stderr, result
    else:
        assert "unable to apply caps" in result.stderr, result
    assert runtime.state_or_none(bundle.id) is None


@pytest.mark.skipif(not _host_lacks(MISSING_ON_HOST),
                    reason=f"this host's bounding set has {MISSING_ON_HOST}")
def test_capability_the_host_lacks_in_bounding_and_ambient_is_skipped(runtime, bundle):
    """In `bounding` it is nothing to drop; in `ambient` it is not permitted, so it is
    skipped like any ambient name outside permitted+inheritable (both runtimes)."""
    _grant(bundle, MISSING_ON_HOST, sets=("bounding", "ambient"))
    out = runtime.probe(bundle, "grep ^Cap /proc/self/status")
    found = _caps(out)
    bit = 1 << CAP_BITS[MISSING_ON_HOST]
    assert not found["CapBnd"] & bit and not found["CapAmb"] & bit, out
    assert found["CapBnd"] == _mask(DEFAULT_CAPS), out


@pytest.mark.skipif(not _host_lacks(MISSING_ON_HOST),
                    reason=f"this host's bounding set has {MISSING_ON_HOST}")
def test_capability_the_host_lacks_is_granted_in_a_user_namespace(runtime, bundle):
    """A new user namespace starts with every capability (over its own resources): the
    check is against what the container's init holds there, not the host's set."""
    bundle.set_namespace("user")
    for kind in ("uidMappings", "gidMappings"):
        bundle.linux[kind] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    subprocess.run(["chown", "-R", "100000:100000", str(bundle.rootfs)], check=True)
    _grant(bundle, MISSING_ON_HOST)
    found = _caps(runtime.probe(bundle, "grep ^Cap /proc/self/status"))
    assert found["CapEff"] == found["CapBnd"] == _mask(DEFAULT_CAPS + [MISSING_ON_HOST])


def test_unknown_capability_name(runtime, bundle):
    """corral-runtime refuses it at create, naming the field; runc 1.1 logs
    "ignoring unknown or unavailable capabilities" and runs without it."""
    bundle.process["capabilities"]["permitted"].append("CAP_CORRAL_BOGUS")
    bundle.sh("grep ^CapPrm /proc/self/status")
    result = runtime.run(bundle)
    if runtime.is_corral:
        assert result.returncode != 0, result
        assert "process.capabilities.permitted" in result.stderr, result
        assert "CAP_CORRAL_BOGUS" in result.stderr, result
        assert runtime.state_or_none(bundle.id) is None
    else:
        assert result.returncode == 0, result
        assert "CAP_CORRAL_BOGUS" in result.stderr  # the warning
        assert _caps(result.stdout)["CapPrm"] == _mask(DEFAULT_CAPS)


# -- no_new_privs ---------------------------------------------------------------------

def _setuid_busybox(bundle) -> None:
    """/suid/busybox: a setuid-root copy; busybox.conf lets its `id` keep euid 0 (busybox
    otherwise drops setuid rights itself for applets that do not need them)."""
    directory = bundle.rootfs / "suid"
    directory.mkdir()
    target = directory / "busybox"
    shutil.copy2(bundle.rootfs / "bin" / "busybox", target)
    os.chown(target, 0, 0)
    os.chmod(target, 0o4755)
    os.symlink("busybox", directory / "id")
    conf = bundle.rootfs / "etc" / "busybox.conf"
    conf.write_text("[SUID]\nid = sxx root.root\n")
    os.chmod(conf, 0o600)


@pytest.mark.parametrize("no_new_privs, euid", [(True, "1000"), (False, "0")])
def test_no_new_privileges_blocks_setuid_gain(runtime, bundle, no_new_privs, euid):
    _setuid_busybox(bundle)
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.process["noNewPrivileges"] = no_new_privs
    out = runtime.probe(bundle, "/suid/id -u; /suid/id; grep NoNewPrivs /proc/self/status")
    lines = out.splitlines()
    assert lines[0] == euid, out
    assert ("euid=0" in lines[1]) is (not no_new_privs), out
    assert lines[2].split() == ["NoNewPrivs:", "1" if no_new_privs else "0"], out


# -- processes, mounts, modules -------------------------------------------------------

def test_only_the_containers_processes_are_visible(runtime, bundle):
    out = runtime.probe(bundle, "sleep 5 & ps -o pid,comm; kill $!")
    rows = [line.split() for line in out.strip().splitlines()[1:]]
    # the background job may not have become sleep yet: it is then a second sh, or
    # "exe" while busybox re-executes itself through /proc/self/exe
    assert len(rows) == 3, out
    assert {row[1] for row in rows} <= {"sh", "ps", "sleep", "exe"}, out
    assert all(int(row[0]) < 50 for row in rows), out  # the namespace's own pids
    assert ["1", "sh"] in rows, out  # the container's PID 1 is its own process
    assert str(os.getpid()) not in (row[0] for row in rows)


def test_cannot_mount(runtime, bundle):
    out = runtime.probe(bundle, "mount -t tmpfs tmpfs /mnt 2>&1 || echo REFUSED; "
                                "mount -o remount,rw /proc/sys 2>&1 || echo REFUSED; "
                                "umount /proc/keys 2>&1 || echo REFUSED; "
                                "grep -c ' /mnt ' /proc/mounts || true")
    assert out.count("REFUSED") == 3, out
    assert out.split()[-1] == "0", out


def test_cannot_load_kernel_modules(runtime, bundle):
    out = runtime.probe(bundle, "grep ^CapBnd /proc/self/status; "
                                "echo not-a-module > /dev/shm/corral.ko; "
                                "insmod /dev/shm/corral.ko 2>&1 || echo REFUSED; "
                                "test -e /proc/sys/kernel/modprobe && "
                                "{ (: > /proc/sys/kernel/modprobe) 2>&1 || echo REFUSED; }; "
                                "grep ' /sys ' /proc/mounts")
    assert not _caps(out)["CapBnd"] & (1 << CAP_BITS["CAP_SYS_MODULE"]), out
    if os.path.exists("/proc/modules"):
        assert "Operation not permitted" in out, out  # init_module's capability check
    else:  # a kernel without module support: ENOSYS, whatever the capabilities
        assert "kernel does not support" in out, out
    refused = 2 if os.path.exists("/proc/sys/kernel/modprobe") else 1
    assert out.count("REFUSED") == refused, out
    # /sys/module/*/parameters and the like: sysfs is read-only
    assert "ro" in out.splitlines()[-1].split()[3].split(","), out


# -- read-only and masked paths -----------------------------------------------------------

@pytest.mark.parametrize("path", ["/proc/sys/kernel/panic", "/proc/sys/net/core/somaxconn",
                                  "/proc/sysrq-trigger", "/sys/kernel/mm/ksm/run",
                                  "/sys/fs/cgroup/cgroup.procs"])
def test_read_only_kernel_files(runtime, bundle, path):
    if not os.path.exists(path) and not path.startswith("/sys/fs/cgroup"):
        pytest.skip(f"{path} does not exist on this kernel")
    out = runtime.probe(bundle, f"test -e {path} || echo MISSING; "
                                f"(: > {path}) 2>&1 || echo REFUSED")
    if "MISSING" in out:
        assert path.startswith("/sys/fs/cgroup"), out  # v1 hierarchy: no such file
        return
    assert "REFUSED" in out and "Read-only file system" in out, out


def test_proc_sys_and_sysrq_are_read_only_mounts(runtime, bundle):
    out = runtime.probe(bundle, "grep -E ' /proc/(sys|sysrq-trigger) | /sys ' /proc/mounts")
    options = {line.split()[1]: line.split()[3].split(",") for line in out.splitlines()}
    for path in ("/proc/sys", "/proc/sysrq-trigger", "/sys"):
        if path == "/proc/sysrq-trigger" and not os.path.exists(path):
            continue  # a kernel without CONFIG_MAGIC_SYSRQ: nothing to protect
        assert "ro" in options[path], out


def test_masked_paths_are_empty(runtime, bundle):
    out = runtime.probe(bundle, "for p in /proc/kcore /proc/keys /proc/timer_list; do "
                                "if test -e $p; then echo $p $(wc -c < $p); "
                                "else echo $p absent; fi; done; "
                                "echo /sys/firmware $(ls -A /sys/firmware | wc -l); "
                                "(: > /sys/firmware/corral) 2>/dev/null || echo REFUSED")
    found = dict(line.split(" ", 1) for line in out.strip().splitlines()[:4])
    assert found["/proc/kcore"] in ("0", "absent"), out
    assert found["/proc/keys"] == "0" and found["/proc/timer_list"] == "0", out
    assert found["/sys/firmware"] == "0", out
    assert out.strip().endswith("REFUSED"), out


# -- devices ----------------------------------------------------------------------------------

def test_host_block_device_not_granted_cannot_be_opened(runtime, bundle):
    """With CAP_MKNOD the node can be made ("b *:* m" is allowed, as in runc's defaults),
    but the device cgroup refuses to open it: EPERM, not ENXIO from a missing disk."""
    _grant(bundle, "CAP_MKNOD")
    out = runtime.probe(bundle, "mknod /dev/corral-sda b 8 0 && echo MADE; "
                                "head -c1 /dev/corral-sda 2>&1 >/dev/null; "
                                "mknod /dev/corral-mem c 1 1 && echo MADE; "
                                "head -c1 /dev/corral-mem 2>&1 >/dev/null; "
                                "head -c1 /dev/zero | wc -c")
    lines = out.strip().splitlines()
    assert lines[0] == "MADE" and lines[2] == "MADE", out
    assert "Operation not permitted" in lines[1] and "Operation not permitted" in lines[3], out
    assert lines[4] == "1", out  # a granted device still opens


def test_without_cap_mknod_no_device_node_can_be_made(runtime, bundle):
    out = runtime.probe(bundle, "mknod /dev/corral-sda b 8 0 2>&1 || echo REFUSED")
    assert "REFUSED" in out and "Operation not permitted" in out, out


# -- AppArmor / SELinux on a host without them ---------------------------------------------

def _apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return os.path.isdir("/sys/kernel/security/apparmor") and f.read(1) == "Y"
    except OSError:
        return False


def _selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


@pytest.mark.skipif(_apparmor_enabled(), reason="AppArmor is enabled on this host")
def test_apparmor_profile_without_apparmor_fails_create(runtime, bundle):
    """runc 1.1 fails writing /proc/self/attr/exec ("unable to apply apparmor profile");
    corral-runtime refuses before creating anything, naming the field."""
    bundle.process["apparmorProfile"] = "corral-test-profile"
    bundle.sh("echo RAN")
    result = runtime.run(bundle)
    assert result.returncode != 0 and "RAN" not in result.stdout, result
    if runtime.is_corral:
        assert "process.apparmorProfile" in result.stderr, result
        assert "AppArmor is not enabled" in result.stderr, result
    else:
        assert "apparmor" in result.stderr, result
    assert runtime.state_or_none(bundle.id) is None


@pytest.mark.skipif(_selinux_enabled(), reason="SELinux is enabled on this host")
@pytest.mark.parametrize("field", ["process.selinuxLabel", "linux.mountLabel"])
def test_selinux_label_without_selinux_fails_create(runtime, bundle, field):
    """runc 1.1: "selinux label is specified in config, but selinux is disabled or not
    supported" for the process label, EINVAL mounting with context= for the mount
    label. corral-runtime refuses both up front, naming the field."""
    section, key = field.split(".")
    target = bundle.process if section == "process" else bundle.linux
    target[key] = "system_u:system_r:container_t:s0:c1,c2"
    bundle.sh("echo RAN")
    result = runtime.run(bundle)
    assert result.returncode != 0 and "RAN" not in result.stdout, result
    if runtime.is_corral:
        assert field in result.stderr and "SELinux is not enabled" in result.stderr, result
    assert runtime.state_or_none(bundle.id) is None


@pytest.mark.parametrize("flags, runc_says", [
    (["--cap", MISSING_ON_HOST], "unable to apply caps"),
    (["--apparmor", "corral-test-profile"], "apparmor"),
    (["--process-label", "system_u:system_r:container_t:s0"], "selinux"),
])
def test_exec_refuses_what_the_host_cannot_grant(runtime, bundle, flags, runc_says):
    if flags[0] == "--cap" and not _host_lacks(MISSING_ON_HOST):
        pytest.skip(f"this host's bounding set has {MISSING_ON_HOST}")
    if flags[0] == "--apparmor" and _apparmor_enabled():
        pytest.skip("AppArmor is enabled on this host")
    if flags[0] == "--process-label" and _selinux_enabled():
        pytest.skip("SELinux is enabled on this host")
    runtime.start_sleeping(bundle)
    result = runtime.exec(bundle.id, "echo", "RAN", flags=flags)
    assert result.returncode != 0 and "RAN" not in result.stdout, result
    if runtime.is_corral:
        field = {"--cap": "process.capabilities.effective", "--apparmor":
                 "process.apparmorProfile", "--process-label": "process.selinuxLabel"}
        assert field[flags[0]] in result.stderr, result
    else:
        assert runc_says in result.stderr, result
    assert runtime.status(bundle.id) == "running"
