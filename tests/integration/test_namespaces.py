"""Namespaces (config-linux.md#namespaces), observed from inside the container."""

from __future__ import annotations

import os
import subprocess

import pytest
from tests.support.bundles import find_test_cgroups, ns_link, processes_rooted_in, unique_id

KINDS = {"ipc": "ipc", "uts": "uts", "cgroup": "cgroup", "network": "net", "mount": "mnt",
         "pid": "pid"}


def test_pid_1_inside(runtime, bundle):
    out = runtime.probe(bundle, "echo pid=$$; ps -o pid,comm | head -5")
    assert "pid=1" in out


def test_hostname(runtime, bundle):
    bundle.config["hostname"] = "corral-test-host"
    out = runtime.probe(bundle, "hostname; cat /proc/sys/kernel/hostname")
    assert out.split() == ["corral-test-host", "corral-test-host"]
    assert os.uname().nodename != "corral-test-host"


def test_domainname(runtime, bundle, request):
    if not runtime.is_corral:
        request.applymarker(pytest.mark.xfail(
            reason="runc 1.1 ignores `domainname` (config.md#domainname; added in runc 1.2)",
            strict=False))
    bundle.config["hostname"] = "corral-test-host"
    bundle.config["domainname"] = "corral.test"
    out = runtime.probe(bundle, "hostname; cat /proc/sys/kernel/domainname")
    assert out.split() == ["corral-test-host", "corral.test"]


def test_new_network_namespace_has_only_lo(runtime, bundle):
    out = runtime.probe(bundle, "ls /sys/class/net; echo ---; tail -n +3 /proc/net/dev")
    listed, dev = out.split("---")
    assert listed.split() == ["lo"]
    assert [line.split(":")[0].strip() for line in dev.strip().splitlines()] == ["lo"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_namespace_differs_from_host(runtime, bundle, kind):
    link = KINDS[kind]
    inside = runtime.probe(bundle, f"readlink /proc/self/ns/{link}").strip()
    assert inside.startswith(f"{link}:[")
    assert inside != ns_link("self", link)


def test_without_network_namespace_shares_the_host(runtime, bundle):
    bundle.remove_namespace("network")
    inside = runtime.probe(bundle, "readlink /proc/self/ns/net").strip()
    assert inside == ns_link("self", "net")


@pytest.fixture
def netns():
    name = unique_id("ns")
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    yield f"/var/run/netns/{name}", name
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def test_join_netns_by_path(runtime, bundle, netns):
    path, name = netns
    # a mark only this namespace has: lo's MTU
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "mtu", "1234"],
                   check=True, capture_output=True)
    bundle.set_namespace("network", path)
    inside = runtime.probe(bundle, "readlink /proc/self/ns/net; cat /sys/class/net/lo/mtu")
    assert inside.split() == [f"net:[{os.stat(path).st_ino}]", "1234"]


def test_new_netns_has_lo_up(runtime, bundle):
    """runc brings the loopback up in every network namespace it creates."""
    out = runtime.probe(bundle, "ip -o link show lo; ip -o addr show lo")
    assert "LOOPBACK,UP" in out
    assert "inet 127.0.0.1/8" in out


def test_join_network_of_another_container(runtime, make_bundle):
    first, second = make_bundle("a"), make_bundle("b")
    pid = runtime.start_sleeping(first)
    second.set_namespace("network", f"/proc/{pid}/ns/net")
    inside = runtime.probe(second, "readlink /proc/self/ns/net").strip()
    assert inside == ns_link(pid, "net")


def test_join_ipc_and_uts_of_another_container(runtime, make_bundle):
    first, second = make_bundle("a"), make_bundle("b")
    first.config["hostname"] = "corral-test-first"
    pid = runtime.start_sleeping(first)
    second.set_namespace("ipc", f"/proc/{pid}/ns/ipc")
    second.set_namespace("uts", f"/proc/{pid}/ns/uts")
    second.config.pop("hostname", None)
    out = runtime.probe(second, "readlink /proc/self/ns/ipc; hostname").split()
    assert out == [ns_link(pid, "ipc"), "corral-test-first"]


def test_join_missing_namespace_path_fails(runtime, bundle):
    bundle.set_namespace("network", "/proc/999999999/ns/net")
    bundle.sh("true")
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert "/proc/999999999/ns/net" in result.stderr
    assert runtime.state_or_none(bundle.id) is None


HOST_ID = 100000


def _user_namespace(bundle, host_id: int = HOST_ID) -> None:
    bundle.set_namespace("user")
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    bundle.config["root"]["readonly"] = False
    # the mapped root must own its rootfs to write in it
    subprocess.run(["chown", "-R", f"{host_id}:{host_id}", str(bundle.rootfs)], check=True)


def test_user_namespace_maps_ids(runtime, bundle):
    _user_namespace(bundle)
    out = runtime.probe(bundle, "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; "
                                "touch /root/made-inside; readlink /proc/self/ns/user")
    lines = out.strip().splitlines()
    assert lines[0:2] == ["0", "0"]
    assert lines[2].split() == ["0", str(HOST_ID), "65536"]
    assert lines[3].split() == ["0", str(HOST_ID), "65536"]
    assert lines[4] != ns_link("self", "user")
    made = os.stat(bundle.rootfs / "root" / "made-inside")
    assert (made.st_uid, made.st_gid) == (HOST_ID, HOST_ID)


def test_user_namespace_non_root_user(runtime, bundle):
    _user_namespace(bundle)
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    out = runtime.probe(bundle, "id -u; touch /tmp/by-user")
    assert out.split() == ["1000"]
    made = os.stat(bundle.rootfs / "tmp" / "by-user")
    assert made.st_uid == HOST_ID + 1000


def test_exec_in_a_user_namespace(runtime, bundle):
    _user_namespace(bundle)
    bundle.sh("sleep 60")
    runtime.create(bundle)
    runtime.start(bundle.id)
    pid = runtime.state(bundle.id)["pid"]
    result = runtime.exec(bundle.id, "sh", "-c", "id -u; cat /proc/self/uid_map; "
                                                 "readlink /proc/self/ns/user")
    assert result.returncode == 0, result
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(HOST_ID), "65536"]
    assert lines[2] == ns_link(pid, "user")


def test_hostname_without_uts_namespace_fails(runtime, bundle):
    bundle.remove_namespace("uts")
    bundle.config["hostname"] = "corral-test-nouts"
    bundle.sh("hostname")
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert "hostname" in result.stderr and "uts" in result.stderr.lower()
    assert os.uname().nodename != "corral-test-nouts"
    assert runtime.state_or_none(bundle.id) is None


def test_user_namespace_with_default_mounts_and_readonly_root(runtime, bundle):
    _user_namespace(bundle)
    bundle.config["root"]["readonly"] = True
    out = runtime.probe(bundle, "echo x > /dev/null && echo null-ok; "
                                "head -c1 /dev/zero >/dev/null && echo dev-ok; "
                                "touch /x 2>/dev/null && echo wrote || echo ro-root; "
                                "ls /sys/class/net; ls /sys/fs/cgroup | head -1 | wc -l; "
                                "id -u")
    assert out.split() == ["null-ok", "dev-ok", "ro-root", "lo", "1", "0"]


def test_user_namespace_with_several_ranges(runtime, bundle):
    _user_namespace(bundle)
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": 1000},
                                   {"containerID": 1000, "hostID": HOST_ID + 5000,
                                    "size": 1000}]
    bundle.process["user"] = {"uid": 1000, "gid": 0}
    out = runtime.probe(bundle, "cat /proc/self/uid_map; id -u; touch /tmp/ranges")
    lines = [line.split() for line in out.strip().splitlines()]
    assert lines[0] == ["0", str(HOST_ID), "1000"]
    assert lines[1] == ["1000", str(HOST_ID + 5000), "1000"]
    assert lines[2] == ["1000"]
    assert os.stat(bundle.rootfs / "tmp" / "ranges").st_uid == HOST_ID + 5000


def test_bad_uid_mapping_fails_cleanly(runtime, bundle):
    _user_namespace(bundle)
    # overlapping ranges: the kernel refuses the map
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": 10},
                                   {"containerID": 5, "hostID": HOST_ID + 100, "size": 10}]
    bundle.sh("echo should-not-run")
    result = runtime.create(bundle, check=False)
    assert result.returncode != 0
    if runtime.is_corral:
        assert "uidMappings" in result.stderr
    assert runtime.state_or_none(bundle.id) is None
    assert find_test_cgroups(bundle.id) == []
    assert processes_rooted_in(bundle.rootfs) == []
