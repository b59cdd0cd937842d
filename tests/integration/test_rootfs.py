"""The container's filesystem (config.md#root, #mounts; config-linux.md#devices,
#masked-paths, #readonly-paths, #sysctl, #rootfs-mount-propagation)."""

from __future__ import annotations

import os

import pytest


def _mounts(out: str) -> dict[str, tuple[str, list[str]]]:
    """/proc/mounts text -> {mount point: (fstype, options)} (the last one wins)."""
    found = {}
    for line in out.strip().splitlines():
        fields = line.split()
        if len(fields) >= 4:
            found[fields[1]] = (fields[2], fields[3].split(","))
    return found


def test_readonly_root_refuses_writes(runtime, bundle):
    bundle.config["root"]["readonly"] = True
    out = runtime.probe(bundle, "touch /corral-x 2>&1 && echo wrote || echo refused; "
                                "grep ' / ' /proc/mounts")
    assert "refused" in out and "wrote" not in out
    assert "ro" in out.splitlines()[-1].split()[3].split(",")
    assert not (bundle.rootfs / "corral-x").exists()


def test_writable_root(runtime, bundle):
    bundle.config["root"]["readonly"] = False
    runtime.probe(bundle, "echo hi > /written-inside")
    assert (bundle.rootfs / "written-inside").read_text() == "hi\n"


def test_bind_mounts_ro_and_rw(runtime, bundle, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "hello").write_text("from the host\n")
    bundle.add_mount("/mnt/rw", "bind", str(rw), ["rbind", "rw"])
    bundle.add_mount("/mnt/ro", "bind", str(ro), ["rbind", "ro"])
    out = runtime.probe(bundle, "cat /mnt/ro/hello; echo data > /mnt/rw/new && echo rw-ok; "
                                "touch /mnt/ro/x 2>/dev/null && echo ro-broken || echo ro-ok")
    assert out.split("\n")[:3] == ["from the host", "rw-ok", "ro-ok"]
    assert (rw / "new").read_text() == "data\n"
    assert not (ro / "x").exists()


def test_bind_mount_of_a_file(runtime, bundle, tmp_path):
    source = tmp_path / "file.txt"
    source.write_text("single file\n")
    bundle.add_mount("/etc/corral-file", None, str(source), ["bind", "ro"])
    out = runtime.probe(bundle, "cat /etc/corral-file")
    assert out == "single file\n"


def test_tmpfs_with_options(runtime, bundle):
    bundle.add_mount("/scratch", "tmpfs", "tmpfs", ["nosuid", "nodev", "size=1m", "mode=1777"])
    out = runtime.probe(bundle, "grep ' /scratch ' /proc/mounts; stat -c %a /scratch; "
                                "echo x > /scratch/f && cat /scratch/f")
    lines = out.strip().splitlines()
    fstype, options = _mounts(lines[0])["/scratch"]
    assert fstype == "tmpfs"
    assert "size=1024k" in options
    assert "nosuid" in options and "nodev" in options
    assert lines[1] == "1777"
    assert lines[2] == "x"


def test_default_mounts(runtime, bundle):
    out = runtime.probe(bundle, "cat /proc/mounts")
    mounts = _mounts(out)
    assert mounts["/proc"][0] == "proc"
    assert mounts["/sys"][0] == "sysfs" and "ro" in mounts["/sys"][1]
    assert mounts["/dev"][0] == "tmpfs"
    assert mounts["/dev/pts"][0] == "devpts"
    assert mounts["/dev/shm"][0] == "tmpfs"
    assert mounts["/dev/mqueue"][0] == "mqueue"
    cgroup = [point for point, (kind, _) in mounts.items()
              if point.startswith("/sys/fs/cgroup") and kind in ("cgroup", "cgroup2", "tmpfs")]
    assert cgroup, out


def test_sysfs_is_read_only(runtime, bundle):
    out = runtime.probe(bundle, "echo 1 > /sys/kernel/uevent_helper 2>/dev/null && echo wrote "
                                "|| echo refused; mkdir /sys/corral 2>/dev/null || echo nomkdir")
    assert "refused" in out and "nomkdir" in out


def test_cgroup_mount_shows_controllers(runtime, bundle):
    out = runtime.probe(bundle, "ls /sys/fs/cgroup")
    assert out.split(), "the cgroup mount is empty"
    if os.path.isdir("/sys/fs/cgroup/memory"):
        assert "memory" in out.split()


def test_default_devices(runtime, bundle):
    out = runtime.probe(
        bundle,
        "echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1; "
        "head -c 16 /dev/urandom | wc -c; for d in null zero full random urandom tty; do "
        "stat -c '%n %F %t,%T %a' /dev/$d; done")
    lines = out.strip().splitlines()
    assert lines[0] == "null-ok"
    assert lines[1].split() == ["00", "00", "00", "00"]
    assert lines[2].strip() == "16"
    devices = {line.split()[0]: line.split() for line in lines[3:]}
    assert devices["/dev/null"][-2:] == ["1,3", "666"]
    assert devices["/dev/zero"][-2:] == ["1,5", "666"]
    assert devices["/dev/urandom"][-2:] == ["1,9", "666"]
    assert devices["/dev/tty"][-2:] == ["5,0", "666"]
    for line in lines[3:]:
        assert "character special file" in line


def test_dev_symlinks(runtime, bundle):
    out = runtime.probe(bundle, "for l in fd stdin stdout stderr ptmx; do "
                                "echo $l=$(readlink /dev/$l); done")
    links = dict(line.split("=", 1) for line in out.strip().splitlines())
    assert links["fd"] == "/proc/self/fd"
    assert links["stdin"] == "/proc/self/fd/0"
    assert links["stdout"] == "/proc/self/fd/1"
    assert links["stderr"] == "/proc/self/fd/2"
    assert links["ptmx"] == "pts/ptmx"


def test_linux_devices_created(runtime, bundle):
    bundle.linux["devices"] = [{"path": "/dev/corral-null", "type": "c", "major": 1, "minor": 3,
                                "fileMode": 0o640, "uid": 0, "gid": 0}]
    bundle.linux["resources"]["devices"] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ]
    out = runtime.probe(bundle, "stat -c '%F %t,%T %a %u:%g' /dev/corral-null; "
                                "echo y > /dev/corral-null && echo write-ok")
    assert out.splitlines()[0] == "character special file 1,3 640 0:0"
    assert "write-ok" in out


def test_device_cgroup_denies_unlisted_device(runtime, bundle):
    # mknod is allowed ("b *:* m"), reading a block device the rules do not list is not
    for kind in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][kind].append("CAP_MKNOD")
    out = runtime.probe(bundle, "mknod /dev/corral-loop b 7 200 && echo made; "
                                "head -c1 /dev/corral-loop 2>/dev/null && echo opened "
                                "|| echo denied")
    assert out.split() == ["made", "denied"]


def test_masked_paths(runtime, bundle):
    # /proc/kcore does not exist on every kernel: mask files that always do
    bundle.linux["maskedPaths"] = ["/proc/keys", "/proc/timer_list", "/proc/corral-missing",
                                   "/sys/firmware"]
    out = runtime.probe(bundle, "wc -c < /proc/keys; wc -c < /proc/timer_list; "
                                "ls -A /sys/firmware | wc -l; "
                                "grep -c -E ' /proc/keys | /sys/firmware ' /proc/mounts")
    keys, timers, entries, mounted = out.split()
    assert keys == "0" and timers == "0"
    assert entries == "0"
    assert mounted == "2"


def test_readonly_paths(runtime, bundle):
    bundle.remove_namespace("network")  # net sysctls are per netns: use a host-global one
    bundle.linux["readonlyPaths"] = ["/proc/sys", "/proc/sysrq-trigger"]
    out = runtime.probe(bundle, "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo wrote"
                                " || echo refused; grep ' /proc/sys ' /proc/mounts")
    lines = out.strip().splitlines()
    assert lines[0] == "refused"
    assert "ro" in _mounts(lines[1])["/proc/sys"][1]


def test_sysctl_in_new_netns(runtime, bundle):
    bundle.linux["sysctl"] = {"net.ipv4.ip_forward": "1", "net.ipv4.ping_group_range": "0 1"}
    out = runtime.probe(bundle, "cat /proc/sys/net/ipv4/ip_forward "
                                "/proc/sys/net/ipv4/ping_group_range")
    assert out.split() == ["1", "0", "1"]


def test_sysctl_not_namespaced_is_refused(runtime, bundle):
    bundle.linux["sysctl"] = {"kernel.corral_test_missing": "1"}
    bundle.sh("true")
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert "kernel.corral_test_missing" in result.stderr
    assert runtime.state_or_none(bundle.id) is None


@pytest.mark.parametrize("propagation", ["private", "slave", "shared"])
def test_rootfs_propagation_accepted(runtime, bundle, propagation):
    bundle.linux["rootfsPropagation"] = propagation
    out = runtime.probe(bundle, "echo ok")
    assert out == "ok\n"


def test_mount_destination_symlink_stays_inside(runtime, bundle, tmp_path):
    # a symlink in the rootfs pointing at a host path must resolve inside the rootfs
    os.symlink("/corral-test-host-escape", bundle.rootfs / "escape")
    bundle.add_mount("/escape", "tmpfs", "tmpfs", ["size=1m"])
    bundle.config["root"]["readonly"] = False
    runtime.probe(bundle, "true")
    assert not os.path.exists("/corral-test-host-escape")


def test_cwd_and_rootfs_relative_path(runtime, bundle):
    bundle.config["root"]["path"] = "rootfs"
    out = runtime.probe(bundle, "pwd; ls /bin/busybox")
    assert out.split() == ["/", "/bin/busybox"]


def test_bind_mount_flags_in_mountinfo(runtime, bundle, tmp_path):
    source = tmp_path / "flags"
    source.mkdir()
    bundle.add_mount("/mnt/flags", "bind", str(source), ["rbind", "ro", "nosuid", "nodev",
                                                         "noexec"])
    out = runtime.probe(bundle, "grep ' /mnt/flags ' /proc/mounts")
    options = _mounts(out)["/mnt/flags"][1]
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(options)


def test_tmpfs_owner_options(runtime, bundle):
    bundle.add_mount("/owned", "tmpfs", "tmpfs", ["mode=750", "uid=1000", "gid=2000",
                                                  "size=1m"])
    out = runtime.probe(bundle, "stat -c '%a %u %g' /owned")
    assert out.split() == ["750", "1000", "2000"]


def test_device_owner(runtime, bundle):
    bundle.linux["devices"] = [{"path": "/dev/corral-zero", "type": "c", "major": 1,
                                "minor": 5, "fileMode": 0o600, "uid": 1000, "gid": 2000}]
    out = runtime.probe(bundle, "stat -c '%a %u %g %t,%T' /dev/corral-zero")
    assert out.split() == ["600", "1000", "2000", "1,5"]


def test_dev_shm_and_mqueue_usable(runtime, bundle):
    out = runtime.probe(bundle, "echo x > /dev/shm/f && cat /dev/shm/f; "
                                "stat -c %a /dev/shm; ls -d /dev/mqueue")
    assert out.split() == ["x", "1777", "/dev/mqueue"]


def test_proc_mounted_for_the_pid_namespace(runtime, bundle):
    out = runtime.probe(bundle, "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | "
                                "grep -c '^[0-9]'")
    lines = out.splitlines()
    assert lines[0].startswith("sh -c")
    assert int(lines[1]) < 10


def test_bind_source_relative_to_the_bundle(runtime, bundle):
    (bundle.path / "data").mkdir()
    (bundle.path / "data" / "f").write_text("relative-source\n")
    bundle.add_mount("/mnt/data", "bind", "data", ["rbind", "ro"])
    assert runtime.probe(bundle, "cat /mnt/data/f") == "relative-source\n"


def test_mount_destination_with_dotdot_stays_inside(runtime, bundle):
    bundle.add_mount("/mnt/../../../corral-dotdot", "tmpfs", "tmpfs", ["size=1m"])
    bundle.config["root"]["readonly"] = False
    out = runtime.probe(bundle, "grep -c ' /corral-dotdot ' /proc/mounts")
    assert out.strip() == "1"
    assert not os.path.exists("/corral-dotdot")


def test_device_in_a_new_subdirectory(runtime, bundle):
    bundle.linux["devices"] = [{"path": "/dev/corral/sub/null", "type": "c", "major": 1,
                                "minor": 3, "fileMode": 0o666}]
    out = runtime.probe(bundle, "echo x > /dev/corral/sub/null && echo ok")
    assert out == "ok\n"


def test_missing_readonly_and_masked_paths_are_ignored(runtime, bundle):
    bundle.linux["readonlyPaths"] = ["/proc/corral-missing", "/corral/missing"]
    bundle.linux["maskedPaths"] = ["/corral/missing-too"]
    assert runtime.probe(bundle, "echo ok") == "ok\n"


def test_bind_file_into_missing_directories(runtime, bundle, tmp_path):
    source = tmp_path / "conf"
    source.write_text("deep\n")
    bundle.add_mount("/etc/corral/deep/conf", "bind", str(source), ["bind", "ro"])
    assert runtime.probe(bundle, "cat /etc/corral/deep/conf") == "deep\n"
    assert (bundle.rootfs / "etc" / "corral" / "deep" / "conf").is_file()


def test_mount_over_a_read_only_rootfs_path(runtime, bundle, tmp_path):
    """Mounts happen before the root turns read-only: their mountpoints can be made."""
    bundle.config["root"]["readonly"] = True
    bundle.add_mount("/new-mountpoint", "tmpfs", "tmpfs", ["size=1m"])
    out = runtime.probe(bundle, "echo x > /new-mountpoint/f && cat /new-mountpoint/f")
    assert out == "x\n"
