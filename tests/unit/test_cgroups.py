"""Cgroup conversions, validation and the pieces of `update`/`events` that need no root:
runc's shares->weight and blkio->io.weight formulas, v1->v2 swap semantics, field
validation with a fake host, `unified` keys, the eBPF device program's shape,
manager selection, flag parsing."""

from __future__ import annotations

import struct

import pytest

from corral.errors import InvalidArgument
from corral.linux.cgroups import Cgroup, devices, ebpf, manager_for
from corral.linux.cgroups.blkio import weight_to_io_weight
from corral.linux.cgroups.cpu import shares_to_weight
from corral.linux.cgroups.memory import swap_to_v2
from corral.linux.cgroups.validate import Host, page_size_kb, validate, validate_unified_key
from corral.runtime import container_update
from corral.runtime.events import parse_duration


class FakeHost(Host):
    def cpus(self):
        return {0, 1, 2, 3}

    def mems(self):
        return {0}

    def hugepage_sizes_kb(self):
        return {2048, 1048576}

    def block_device(self, major, minor):
        return (major, minor) == (8, 0)


def check(resources):
    validate(resources, FakeHost())


# -- conversions ---------------------------------------------------------------------------
@pytest.mark.parametrize("shares,weight", [(0, 0), (2, 1), (1024, 39), (262144, 10000),
                                           (512, 20)])
def test_shares_to_weight_as_runc(shares, weight):
    assert shares_to_weight(shares) == weight


@pytest.mark.parametrize("blkio,io", [(0, 0), (10, 1), (1000, 10000), (500, 4950), (100, 910)])
def test_blkio_weight_to_io_weight_as_runc(blkio, io):
    assert weight_to_io_weight(blkio) == io


@pytest.mark.parametrize("swap,limit,v2", [
    (None, None, None),        # nothing set
    (0, 100, None),            # swap unset
    (-1, 100, -1),             # unlimited swap
    (None, -1, -1),            # unlimited memory, swap unset: unlimited both
    (300, 100, 200),           # v1 memory+swap -> v2 swap alone
    (100, 100, 0),             # equal: no swap at all
])
def test_swap_to_v2(swap, limit, v2):
    assert swap_to_v2(swap, limit) == v2


@pytest.mark.parametrize("swap,limit", [(50, 100), (300, None), (300, -1)])
def test_swap_to_v2_refuses(swap, limit):
    with pytest.raises(InvalidArgument, match="memory.swap"):
        swap_to_v2(swap, limit)


# -- validation ------------------------------------------------------------------------------
def test_valid_resources_pass():
    check({
        "memory": {"limit": 1 << 30, "swap": 2 << 30, "reservation": 1 << 29, "swappiness": 0,
                   "disableOOMKiller": False, "kernel": -1},
        "cpu": {"shares": 1024, "quota": -1, "period": 100000, "cpus": "0-1,3", "mems": "0",
                "idle": 1},
        "pids": {"limit": 0},
        "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1 << 20}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}],
        "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]},
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        "unified": {"memory.high": "1G", "io.max": "8:0 rbps=1024"},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
    })


@pytest.mark.parametrize("resources,field", [
    ({"memory": {"limit": -2}}, "memory.limit"),
    ({"memory": {"limit": "1G"}}, "memory.limit"),
    ({"memory": {"swappiness": 101}}, "memory.swappiness"),
    ({"memory": {"limit": 200, "swap": 100}}, "memory.swap"),
    ({"memory": {"disableOOMKiller": 1}}, "memory.disableOOMKiller"),
    ({"cpu": {"period": 10}}, "cpu.period"),
    ({"cpu": {"quota": -5}}, "cpu.quota"),
    ({"cpu": {"cpus": "0-7"}}, "cpu.cpus"),
    ({"cpu": {"cpus": "zero"}}, "cpu.cpus"),
    ({"cpu": {"mems": "1"}}, "cpu.mems"),
    ({"cpu": {"idle": 2}}, "cpu.idle"),
    ({"pids": {"limit": -3}}, "pids.limit"),
    ({"blockIO": {"weight": 5}}, "blockIO.weight"),
    ({"blockIO": {"leafWeight": 1001}}, "blockIO.leafWeight"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0}]}}, "blockIO.weightDevice[0]"),
    ({"blockIO": {"throttleWriteIOPSDevice": [{"major": 9, "minor": 9, "rate": 1}]}},
     "blockIO.throttleWriteIOPSDevice[0]"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, "hugepageLimits[0].pageSize"),
    ({"hugepageLimits": [{"pageSize": "4MB", "limit": 1}]}, "hugepageLimits[0].pageSize"),
    ({"network": {"priorities": [{"name": "a/b", "priority": 1}]}}, "network.priorities[0]"),
    ({"unified": {"../cgroup.procs": "1"}}, "unified"),
    ({"unified": {"memory.max": 5}}, "unified.memory.max"),
    ({"devices": [{"allow": True, "type": "x"}]}, "devices[0].type"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "devices[0].access"),
    ({"devices": [{"access": "r"}]}, "devices[0].allow"),
])
def test_bad_values_name_the_field(resources, field):
    with pytest.raises(InvalidArgument, match=r"linux\.resources\." + field.replace("[", r"\[")
                       .replace("]", r"\]").replace(".", r"\.")):
        check(resources)


@pytest.mark.parametrize("key", ["memory.high", "cgroup.max.descendants", "io.bfq.weight"])
def test_unified_keys_accepted(key):
    validate_unified_key(key)


@pytest.mark.parametrize("key", ["", ".", "..", "../memory.max", "a/b", "memory..max", "memory",
                                 "/memory.max", "memory.max\0"])
def test_unified_keys_refused(key):
    with pytest.raises(InvalidArgument, match="unified"):
        validate_unified_key(key)


def test_page_sizes():
    assert page_size_kb("2MB") == 2048
    assert page_size_kb("1GB") == 1048576
    assert page_size_kb("64KB") == 64
    assert page_size_kb("2mb") is None


# -- devices ----------------------------------------------------------------------------------
def test_v1_device_lines():
    assert devices.v1_line({"allow": False, "access": "rwm"}) == "a"
    assert devices.v1_line({"type": "c", "major": 1, "minor": -1, "access": "r"}) == "c 1:* r"
    assert devices.v1_line({"type": "b", "major": 8, "minor": 0}) == "b 8:0 rwm"


def test_effective_rules_append_defaults_and_config_devices():
    rules = devices.effective_rules({"devices": [{"allow": False, "access": "rwm"}]},
                                    [{"type": "u", "major": 4, "minor": 64, "path": "/dev/x"}])
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"type": "c", "major": 1, "minor": 3, "access": "rwm", "allow": True} in rules
    assert rules[-1] == {"type": "c", "major": 4, "minor": 64, "access": "rwm", "allow": True}


def _instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("<BBhi", program, i) for i in range(0, len(program), 8)]


def test_ebpf_program_shape():
    program = ebpf.compile_rules([{"allow": False, "access": "rwm"},
                                  {"allow": True, "type": "c", "major": 1, "minor": 3,
                                   "access": "rw"}])
    insns = _instructions(program)
    assert len(program) % 8 == 0
    assert insns[-1][0] == 0x95  # exit
    # the last rule is checked first: type c (2), access mask rw (2|4), major 1, minor 3
    immediates = [imm for code, _, _, imm in insns[6:]]
    assert immediates[:3] == [2, 0, 6]
    # every jump lands inside the program
    for index, (code, _, off, _) in enumerate(insns):
        if code in (0x55, 0x5D):
            assert 0 < index + 1 + off < len(insns)


def test_ebpf_match_all_rule_ends_the_program():
    """The verifier refuses unreachable code: nothing after a match-all rule."""
    allow_all = ebpf.compile_rules([{"allow": True, "type": "c", "major": 1, "minor": 3},
                                    {"allow": True, "access": "rwm"}])
    assert len(_instructions(allow_all)) == 6 + 2


# -- managers and the CLI's parsers -------------------------------------------------------------
def test_manager_selection_follows_the_cgroup_paths():
    assert manager_for(Cgroup({"unified": "/sys/fs/cgroup/x"})).version == 2
    assert manager_for(Cgroup({"memory": "/sys/fs/cgroup/memory/x",
                               "unified": "/sys/fs/cgroup/unified/x"})).version == 1


def test_v1_manager_refuses_a_missing_controller():
    manager = manager_for(Cgroup({"memory": "/nonexistent/memory/x"}))
    with pytest.raises(Exception, match=r"linux\.resources\.pids: the host has no pids"):
        manager.check({"pids": {"limit": 5}})
    with pytest.raises(Exception, match="unified"):
        manager.check({"unified": {"memory.high": "1"}})


def test_v2_manager_refuses_v1_only_settings():
    manager = manager_for(Cgroup({"unified": "/nonexistent/x"}))
    with pytest.raises(Exception, match=r"network"):
        manager.check({"network": {"classID": 1}})
    with pytest.raises(Exception, match=r"realtimeRuntime"):
        manager.check({"cpu": {"realtimeRuntime": 1000}})


@pytest.mark.parametrize("text,value", [("20M", 20 << 20), ("20m", 20 << 20), ("1GiB", 1 << 30),
                                        ("512", 512), ("-1", -1), ("1.5k", 1536), ("3kb", 3072)])
def test_update_sizes(text, value):
    assert container_update.parse_bytes(text, "--memory") == value


@pytest.mark.parametrize("text", ["-5", "x", "5X", ""])
def test_update_bad_sizes(text):
    with pytest.raises(InvalidArgument, match="--memory"):
        container_update.parse_bytes(text, "--memory")


def test_update_flags_to_resources():
    resources = container_update.resources_from_flags(
        {"memory": "30M", "memory_swap": "-1", "pids_limit": "15", "cpu_shares": "512",
         "cpu_quota": "-1", "cpuset_cpus": "0-1", "blkio_weight": "300"})
    assert resources == {"memory": {"limit": 30 << 20, "swap": -1}, "pids": {"limit": 15},
                         "cpu": {"shares": 512, "quota": -1, "cpus": "0-1"},
                         "blockIO": {"weight": 300}}
    with pytest.raises(InvalidArgument, match="--cpu-period"):
        container_update.resources_from_flags({"cpu_period": "-5"})
    with pytest.raises(Exception, match="l3 cache"):
        container_update.resources_from_flags({"l3_cache_schema": "L3:0=f"})


def test_update_file_zeroes_mean_unchanged(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"memory": {"limit": 0, "reservation": 0, "swap": 0}, '
                    '"cpu": {"shares": 0, "quota": 50000, "cpus": ""}, '
                    '"blockIO": {"blkioWeight": 200}, "pids": {"limit": 0}}')
    assert container_update.load_resources_file(str(path)) == {
        "cpu": {"quota": 50000}, "blockIO": {"weight": 200}}


def test_update_merge_keeps_other_fields():
    merged = container_update.merge({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 3}},
                                    {"memory": {"limit": 5}, "cpu": {"shares": 2}})
    assert merged == {"memory": {"limit": 5, "swap": 2}, "pids": {"limit": 3},
                      "cpu": {"shares": 2}}


@pytest.mark.parametrize("text,seconds", [("5s", 5), ("100ms", 0.1), ("1m30s", 90),
                                          ("1.5s", 1.5)])
def test_event_intervals(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "s", "-1s", "0s", "5 s"])
def test_bad_event_intervals(text):
    with pytest.raises(InvalidArgument, match="--interval"):
        parse_duration(text)


def test_relative_cgroups_path_placement():
    """v1/hybrid: under the runtime's own cgroup per hierarchy; v2-only: under its parent
    (runc's fs2 default path); absolute: from the hierarchy root."""
    from corral.linux.cgroups import Hierarchy

    hybrid = [Hierarchy("/sys/fs/cgroup/memory", 1, ("memory",), "/session/abc"),
              Hierarchy("/sys/fs/cgroup/unified", 2, (), "/user.slice/s.scope")]
    paths = Cgroup.for_config(None, "c1", hybrid).paths
    assert paths == {"memory": "/sys/fs/cgroup/memory/session/abc/c1",
                     "unified": "/sys/fs/cgroup/unified/user.slice/s.scope/c1"}
    pure = [Hierarchy("/sys/fs/cgroup", 2, (), "/user.slice/s.scope")]
    assert Cgroup.for_config("pod/c1", "c1", pure).paths == {
        "unified": "/sys/fs/cgroup/user.slice/pod/c1"}
    assert Cgroup.for_config("/abs/c1", "c1", pure).paths == {"unified": "/sys/fs/cgroup/abs/c1"}
    with pytest.raises(InvalidArgument, match="cgroupsPath"):
        Cgroup.for_config("../escape", "c1", pure)


def test_host_cgroup_mounts_from_the_detected_hierarchies_match_mountinfo():
    """The init mounts /sys/fs/cgroup from the runtime's detect(), not a second read."""
    from corral.linux.cgroups import detect
    from corral.runtime import rootfs

    assert rootfs._host_cgroup_hierarchies(detect()) == rootfs._host_cgroup_hierarchies()


def test_for_config_keeps_the_hierarchies_it_used():
    from corral.linux.cgroups import Hierarchy

    known = [Hierarchy("/sys/fs/cgroup/memory", 1, ("memory",), "/", "rw,memory"),
             Hierarchy("/sys/fs/cgroup/unified", 2, (), "/", "rw")]
    cgroup = Cgroup.for_config("/a/b", "id", known)
    assert cgroup.hierarchies is known
    assert cgroup.paths == {"memory": "/sys/fs/cgroup/memory/a/b",
                            "unified": "/sys/fs/cgroup/unified/a/b"}
