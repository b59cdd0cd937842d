"""CRI metrics (ListMetricDescriptors / ListPodSandboxMetrics) checked against the
cgroup files and the pod's /proc/<pid>/net/dev, which this test finds on its own
(from /proc/self/mountinfo and /proc/<pid>/cgroup: v1, v2 or hybrid).

The server, pods and teardown are test_cri.py's (`cri` and `pod` fixtures).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from tests.integration import test_cri as base
from tests.integration.test_cri import _until, pb

cri, pod = base.cri, base.pod  # the module's server and pods (fixtures)

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers, CNI)")]


def _mounts() -> dict[str, str]:
    """{v1 controller or "" for v2: mount point} of the cgroup hierarchies."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup2":
                out[""] = fields[4]
            elif fstype == "cgroup":
                for opt in options:
                    out.setdefault(opt, fields[4])
    return out


def _cgroup_file(pid: int, controller: str, v1: str, v2: str) -> Path:
    """The file `v1` of `controller` when the host has it as a v1 hierarchy, else `v2`
    in the unified one."""
    mounts = _mounts()
    own = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        for c in (controllers.split(",") if number != "0" else [""]):
            own[c] = path
    if controller in mounts and controller in own:
        return Path(mounts[controller] + own[controller].rstrip("/")) / v1
    return Path(mounts[""] + own[""].rstrip("/")) / v2


def _memory_usage(pid: int) -> int:
    return int(_cgroup_file(pid, "memory", "memory.usage_in_bytes",
                            "memory.current").read_text())


def _cpu_ns(pid: int) -> int:
    path = _cgroup_file(pid, "cpuacct", "cpuacct.usage", "cpu.stat")
    text = path.read_text()
    if path.name == "cpu.stat":
        return int(text.split("usage_usec")[1].split()[0]) * 1000
    return int(text)


def _net(pid: int, iface: str) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == iface:
            fields = rest.split()
            return int(fields[0]), int(fields[8])
    raise AssertionError(f"no {iface} in /proc/{pid}/net/dev")


def _pid(cri, cid: str) -> int:
    return json.loads(cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
        container_id=cid, verbose=True)).info["info"])["pid"]


def _metrics(cri, pod_id: str) -> pb.PodSandboxMetrics:
    found = [m for m in cri.runtime.ListPodSandboxMetrics(
        pb.ListPodSandboxMetricsRequest()).pod_metrics if m.pod_sandbox_id == pod_id]
    assert len(found) == 1
    return found[0]


def _value(metrics, name: str) -> int:
    values = [m for m in metrics if m.name == name]
    assert values, f"no metric {name}"
    return values[0].value.value


def test_metric_descriptors_and_pod_metrics_match_the_cgroups(cri, pod):
    rt = cri.runtime
    descriptors = {d.name: list(d.label_keys) for d in rt.ListMetricDescriptors(
        pb.ListMetricDescriptorsRequest()).descriptors}
    for name in ("container_cpu_usage_seconds_total", "container_memory_usage_bytes",
                 "container_memory_working_set_bytes", "container_spec_memory_limit_bytes",
                 "container_network_receive_bytes_total",
                 "container_network_transmit_bytes_total", "container_processes",
                 "container_threads"):
        assert name in descriptors
    assert descriptors["container_cpu_usage_seconds_total"] == ["id", "name", "image", "cpu"]

    p = pod()
    busy = p.container("busy", ["sh", "-c", ("head -c 30000000 /dev/zero | tr '\\0' a > "
                                            "/dev/shm/blob; while :; do :; done")])
    limit = 64 << 20
    idle = p.container("idle", ["sleep", "300"], linux=pb.LinuxContainerConfig(
        resources=pb.LinuxContainerResources(memory_limit_in_bytes=limit, cpu_quota=20000,
                                             cpu_period=100000)))
    busy_pid, idle_pid = _pid(cri, busy), _pid(cri, idle)

    def loaded():
        m = _metrics(cri, p.id)
        per = {c.container_id: c.metrics for c in m.container_metrics}
        ok = (busy in per and
              _value(per[busy], "container_cpu_usage_seconds_total") >= 1 and
              _value(per[busy], "container_memory_usage_bytes") > 25_000_000)
        return ok and m
    m = _until(loaded, timeout=60, step=0.5)

    # every name returned is described, with as many label values as keys
    for metric in list(m.metrics) + [x for c in m.container_metrics for x in c.metrics]:
        assert metric.name in descriptors, metric.name
        assert len(metric.label_values) == len(descriptors[metric.name]), metric
        assert metric.timestamp == 0
    assert {c.container_id for c in m.container_metrics} == {busy, idle}

    # cpu: the counter lies between two readings of the cgroup's own file
    before = _cpu_ns(busy_pid)
    per = {c.container_id: c.metrics for c in _metrics(cri, p.id).container_metrics}
    after = _cpu_ns(busy_pid)
    cpu = next(x for x in per[busy] if x.name == "container_cpu_usage_seconds_total")
    assert cpu.metric_type == pb.COUNTER
    assert list(cpu.label_values) == [busy, "busy", "busybox", "total"]
    assert before // 10**9 <= cpu.value.value <= after // 10**9
    assert cpu.value.value >= 1

    # memory: the gauge matches memory.usage_in_bytes (or memory.current) to within
    # what a busy loop moves it; the working set holds the 30 MB in /dev/shm
    before = _memory_usage(busy_pid)
    per = {c.container_id: c.metrics for c in _metrics(cri, p.id).container_metrics}
    after = _memory_usage(busy_pid)
    usage = _value(per[busy], "container_memory_usage_bytes")
    assert min(before, after) - (1 << 20) <= usage <= max(before, after) + (1 << 20)
    assert _value(per[busy], "container_memory_working_set_bytes") > 25_000_000
    assert _value(per[busy], "container_spec_memory_limit_bytes") == 0

    # limits: exactly what the cgroup files say
    mem_file = _cgroup_file(idle_pid, "memory", "memory.limit_in_bytes", "memory.max")
    assert int(mem_file.read_text()) == limit
    assert _value(per[idle], "container_spec_memory_limit_bytes") == limit
    quota_file = _cgroup_file(idle_pid, "cpu", "cpu.cfs_quota_us", "cpu.max")
    assert quota_file.read_text().split()[0] == "20000"
    assert _value(per[idle], "container_spec_cpu_quota") == 20000
    assert _value(per[idle], "container_spec_cpu_period") == 100000

    # processes and threads: the cgroup's cgroup.procs (sh and tr/head are gone: sh)
    procs_file = _cgroup_file(busy_pid, "pids", "cgroup.procs", "cgroup.procs")
    procs = [line for line in procs_file.read_text().splitlines() if line]
    assert _value(per[busy], "container_processes") == len(procs) >= 1
    assert _value(per[busy], "container_threads") >= len(procs)

    # network: eth0's counters of the pod's netns, after some traffic from the pod
    p.exec(idle, ["wget", "-q", "-T", "1", "-O", "/dev/null", "http://192.0.2.1/"])
    infra = json.loads(rt.PodSandboxStatus(pb.PodSandboxStatusRequest(
        pod_sandbox_id=p.id, verbose=True)).info["info"])["pid"]
    rx0, tx0 = _net(infra, "eth0")
    net = _metrics(cri, p.id).metrics
    rx1, tx1 = _net(infra, "eth0")
    by_name = {(x.name, x.label_values[-1]): x for x in net}
    rx = by_name[("container_network_receive_bytes_total", "eth0")]
    tx = by_name[("container_network_transmit_bytes_total", "eth0")]
    assert list(rx.label_values[:2]) == [p.id, "POD"]
    assert rx0 <= rx.value.value <= rx1 and tx0 <= tx.value.value <= tx1
    assert tx.value.value > 0
    assert not any(name == "lo" for _, name in by_name)

    # a stopped pod has no metrics
    p.remove()
    assert p.id not in {x.pod_sandbox_id for x in rt.ListPodSandboxMetrics(
        pb.ListPodSandboxMetricsRequest()).pod_metrics}


def test_stream_pod_sandbox_metrics(cri, pod):
    p = pod()
    cid = p.container("main", ["sleep", "300"])
    time.sleep(0.1)
    got = [m for r in cri.runtime.StreamPodSandboxMetrics(pb.StreamPodSandboxMetricsRequest())
           for m in r.pod_sandbox_metrics]
    mine = [m for m in got if m.pod_sandbox_id == p.id]
    assert len(mine) == 1 and [c.container_id for c in mine[0].container_metrics] == [cid]
    procs = [x for x in mine[0].container_metrics[0].metrics
             if x.name == "container_processes"]
    assert procs[0].value.value == 1  # sleep


def test_host_network_pod_has_no_network_metrics(cri, pod):
    p = pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.NODE))))
    cid = p.container("main", ["sleep", "300"])
    m = _metrics(cri, p.id)
    assert list(m.metrics) == []  # the node's counters are not the pod's
    assert [c.container_id for c in m.container_metrics] == [cid]
