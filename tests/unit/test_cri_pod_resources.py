"""translate.pod_resources: a pod's resources + overhead → the pod cgroup's OCI
`linux.resources`, as kubelet sizes a pod cgroup (pure; the generated messages)."""

from __future__ import annotations

import pytest

pb = pytest.importorskip("corral.cri._gen.api_pb2", reason="CRI stubs not generated")

from corral.cri.translate import pod_resources
from corral.errors import InvalidArgument


def _linux(resources=None, overhead=None) -> pb.LinuxPodSandboxConfig:
    linux = pb.LinuxPodSandboxConfig()
    if resources is not None:
        linux.resources.CopyFrom(resources)
    if overhead is not None:
        linux.overhead.CopyFrom(overhead)
    return linux


def test_nothing_set_is_no_limit():
    assert pod_resources(_linux()) == {}


def test_overhead_is_added_to_the_pods_limits():
    r = pb.LinuxContainerResources(memory_limit_in_bytes=100 << 20, cpu_quota=50000,
                                   cpu_period=100000, cpu_shares=512, cpuset_cpus="0",
                                   unified={"memory.high": "90000000"},
                                   hugepage_limits=[pb.HugepageLimit(page_size="2MB",
                                                                     limit=4 << 20)])
    o = pb.LinuxContainerResources(memory_limit_in_bytes=20 << 20, cpu_quota=5000,
                                   cpu_period=50000, cpu_shares=128)
    assert pod_resources(_linux(r, o)) == {
        "memory": {"limit": 120 << 20},
        "cpu": {"quota": 60000, "period": 100000, "shares": 640, "cpus": "0"},
        "unified": {"memory.high": "90000000"},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
    }


def test_overhead_alone_sets_no_limit_but_adds_shares():
    o = pb.LinuxContainerResources(memory_limit_in_bytes=20 << 20, cpu_quota=5000,
                                   cpu_shares=128)
    assert pod_resources(_linux(overhead=o)) == {"cpu": {"shares": 128}}


def test_swap_grows_with_the_memory_overhead():
    r = pb.LinuxContainerResources(memory_limit_in_bytes=100, memory_swap_limit_in_bytes=200)
    o = pb.LinuxContainerResources(memory_limit_in_bytes=10)
    assert pod_resources(_linux(r, o)) == {"memory": {"limit": 110, "swap": 210}}


@pytest.mark.parametrize(("which", "field", "value", "words"), [
    ("overhead", "memory_limit_in_bytes", -1, "overhead.memory_limit_in_bytes: -1"),
    ("resources", "cpu_shares", -5, "resources.cpu_shares: -5"),
    ("resources", "cpu_period", 10, "resources.cpu_period: 10"),
])
def test_bad_values_name_the_field(which, field, value, words):
    r = pb.LinuxContainerResources(**{field: value})
    linux = _linux(**{which: r})
    with pytest.raises(InvalidArgument) as info:
        pod_resources(linux)
    assert f"LinuxPodSandboxConfig.{words}" in str(info.value)


def test_update_request_fields_are_named():
    with pytest.raises(InvalidArgument, match="UpdatePodSandboxResourcesRequest.resources"):
        pod_resources(None, resources=pb.LinuxContainerResources(cpu_quota=-7),
                      what="UpdatePodSandboxResourcesRequest")


@pytest.mark.parametrize("root", ["corral-pods", "/", "/a/../b", "/a b", "/x/./y"])
def test_bad_pod_cgroup_roots_are_refused(root):
    from corral.cri import podcgroup
    from corral.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="--pod-cgroup-root"):
        podcgroup.check_root(root)


def test_pod_cgroup_root_and_own_paths():
    from corral.cri import podcgroup

    assert podcgroup.check_root("/corral-test-pods/") == "/corral-test-pods"
    path = podcgroup.own_path("/k8s.pods")
    assert path.startswith("/k8s.pods/pod-") and len(path) == len("/k8s.pods/pod-") + 32
    assert podcgroup.own_path(key="ab") == "/corral-pods/pod-ab"
