"""Pod-level resources and overhead (LinuxPodSandboxConfig.resources/.overhead,
UpdatePodSandboxResources) written to the pod cgroup: kubelet's cgroup_parent or,
without one, the server's own <--pod-cgroup-root>/pod-<key> (default /corral-pods). Checked in the cgroup files this
test finds itself, and by the kernel enforcing them on the pod's containers.

The server, pods and teardown are test_cri.py's (`cri` and `pod` fixtures).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from tests.integration import test_cri as base
from tests.integration.test_cri import _code, _until, grpc, pb
from tests.integration.test_cri_metrics import _mounts

cri, pod = base.cri, base.pod  # the module's server and pods (fixtures)

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers, CNI)")]


def _file(cgroup: str, controller: str, v1: str, v2: str) -> Path:
    mounts = _mounts()
    if controller in mounts:
        return Path(mounts[controller] + cgroup) / v1
    return Path(mounts[""] + cgroup) / v2


def _memory_limit(cgroup: str) -> int:
    text = _file(cgroup, "memory", "memory.limit_in_bytes", "memory.max").read_text().strip()
    return 0 if text == "max" else int(text)


def _cpu(cgroup: str) -> tuple[int, int]:
    """(quota, shares) of the cgroup; v2: cpu.max's quota and cpu.weight."""
    path = _file(cgroup, "cpu", "cpu.cfs_quota_us", "cpu.max")
    if path.name == "cpu.max":
        weight = int((path.parent / "cpu.weight").read_text())
        return int(path.read_text().split()[0]), weight
    return int(path.read_text()), int((path.parent / "cpu.shares").read_text())


def _dirs(cgroup: str) -> list[Path]:
    return [Path(point + cgroup) for point in set(_mounts().values())]


def _own_cgroup(pid: int, controller: str = "memory") -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (number == "0" and controller == ""):
            return path
    raise AssertionError(f"no {controller} cgroup for {pid}")


def _pid(cri, cid: str) -> int:
    return json.loads(cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
        container_id=cid, verbose=True)).info["info"])["pid"]


@pytest.fixture
def parent():
    """A cgroup parent path kubelet would give; every hierarchy's copy removed after."""
    path = f"/corral-test-{uuid.uuid4().hex[:8]}"
    yield path
    for d in _dirs(path):
        if d.is_dir():
            for leaf in (x for x in d.iterdir() if x.is_dir()):
                leaf.rmdir()
            d.rmdir()


RESOURCES = pb.LinuxContainerResources(memory_limit_in_bytes=24 << 20, cpu_quota=50000,
                                       cpu_period=100000, cpu_shares=512)
OVERHEAD = pb.LinuxContainerResources(memory_limit_in_bytes=8 << 20, cpu_quota=10000,
                                      cpu_period=100000, cpu_shares=128)


def test_pod_resources_and_overhead_size_the_cgroup_parent(cri, pod, parent):
    linux = pb.LinuxPodSandboxConfig(cgroup_parent=parent, resources=RESOURCES,
                                     overhead=OVERHEAD)
    p = pod(linux=linux)
    assert _memory_limit(parent) == 32 << 20
    quota, shares = _cpu(parent)
    assert quota == 60000
    if _file(parent, "cpu", "cpu.shares", "cpu.weight").name == "cpu.shares":
        assert shares == 640
    # the containers live beneath it, and the kernel holds them to the pod's limit:
    # one with no limit of its own is OOM-killed at 32 MiB
    cid = p.container("main", ["sleep", "300"])
    assert _own_cgroup(_pid(cri, cid)) == f"{parent}/corral-{cid}"
    hog = p.container("hog", ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
    status = _until(lambda: (s := cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
        container_id=hog)).status).state == pb.CONTAINER_EXITED and s, timeout=20)
    assert status.reason == "OOMKilled" and status.exit_code == 137, status
    # UpdatePodSandboxResources resizes it (kubelet's in-place pod resize)
    cri.runtime.UpdatePodSandboxResources(pb.UpdatePodSandboxResourcesRequest(
        pod_sandbox_id=p.id, resources=pb.LinuxContainerResources(
            memory_limit_in_bytes=100 << 20, cpu_quota=80000, cpu_period=100000),
        overhead=OVERHEAD))
    assert _memory_limit(parent) == 108 << 20 and _cpu(parent)[0] == 90000
    again = p.container("hog2", ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
    status = _until(lambda: (s := cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
        container_id=again)).status).state == pb.CONTAINER_EXITED and s, timeout=20)
    assert status.exit_code == 0, status
    # the server made the parent: it goes with the pod
    p.remove()
    assert not any(d.is_dir() for d in _dirs(parent))


def test_existing_cgroup_parent_is_left_to_its_owner(cri, pod, parent):
    made = _file(parent, "memory", "memory.limit_in_bytes", "memory.max").parent
    made.mkdir()
    p = pod(linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent, overhead=OVERHEAD))
    assert _memory_limit(parent) == 0 or _memory_limit(parent) >= 1 << 62  # no limit
    p.remove()
    assert made.is_dir()


@pytest.fixture
def own_parent():
    """The test server's `--pod-cgroup-root` (a corral-test- name, removed with it)."""
    yield base.POD_CGROUP_ROOT


def test_pod_resources_without_a_parent_get_a_pod_cgroup_of_the_server(cri, pod,
                                                                       own_parent):
    p = pod(linux=pb.LinuxPodSandboxConfig(resources=RESOURCES))
    own = json.loads(cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(
        pod_sandbox_id=p.id, verbose=True)).info["info"])["cgroupParent"]
    assert own.startswith(f"{own_parent}/pod-")
    assert _memory_limit(own) == 24 << 20 and _cpu(own)[0] == 50000
    cid = p.container("main", ["sleep", "300"])
    assert _own_cgroup(_pid(cri, cid)) == f"{own}/corral-{cid}"
    infra = json.loads(cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(
        pod_sandbox_id=p.id, verbose=True)).info["info"])["pid"]
    assert _own_cgroup(infra) == f"{own}/corral-{p.id}"
    p.remove()
    assert not any(d.is_dir() for d in _dirs(own))


def test_bad_pod_resources_are_invalid_and_leave_nothing(cri, pod, parent):
    ids = {s.id for s in cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items}
    code, message = _code(lambda: pod(linux=pb.LinuxPodSandboxConfig(
        cgroup_parent=parent, resources=RESOURCES,
        overhead=pb.LinuxContainerResources(memory_limit_in_bytes=-1))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "LinuxPodSandboxConfig.overhead.memory_limit_in_bytes" in message
    assert {s.id for s in cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items} == ids
    assert not any(d.is_dir() for d in _dirs(parent))
    # UpdatePodSandboxResources: unknown pod, pod with no pod cgroup, bad values
    code, _ = _code(cri.runtime.UpdatePodSandboxResources,
                    pb.UpdatePodSandboxResourcesRequest(pod_sandbox_id="ab" * 32))
    assert code == grpc.StatusCode.NOT_FOUND
    plain = pod()
    code, message = _code(cri.runtime.UpdatePodSandboxResources,
                          pb.UpdatePodSandboxResourcesRequest(pod_sandbox_id=plain.id,
                                                              resources=RESOURCES))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no pod cgroup" in message
    code, message = _code(cri.runtime.UpdatePodSandboxResources,
                          pb.UpdatePodSandboxResourcesRequest(
                              pod_sandbox_id=plain.id,
                              resources=pb.LinuxContainerResources(cpu_shares=-2)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "UpdatePodSandboxResourcesRequest.resources.cpu_shares" in message
