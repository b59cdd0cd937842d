"""The CRIListStreaming calls (StreamPodSandboxes, StreamContainers,
StreamContainerStats, StreamPodSandboxStats, StreamImages): what the List* calls
return, with the same filters, over a server stream.

The server, pods and teardown are test_cri.py's (`cri` and `pod` fixtures).
"""

from __future__ import annotations

import os

import pytest
from tests.integration import test_cri as base
from tests.integration.test_cri import pb

cri, pod = base.cri, base.pod  # the module's server and pods (fixtures)

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers, CNI)")]


def _all(stream, field: str) -> list:
    return [item for message in stream for item in getattr(message, field)]


def test_stream_lists_match_the_list_calls(cri, pod):
    rt = cri.runtime
    first, second = pod(), pod()
    a = first.container("a", ["sleep", "300"])
    b = second.container("b", ["sleep", "300"])
    second.container("c", ["sleep", "300"], start=False)

    listed = {x.id for x in rt.ListPodSandbox(pb.ListPodSandboxRequest()).items}
    streamed = _all(rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest()), "pod_sandboxes")
    assert {x.id for x in streamed} == listed >= {first.id, second.id}
    one = _all(rt.StreamPodSandboxes(pb.StreamPodSandboxesRequest(
        filter=pb.PodSandboxFilter(label_selector={"app": first.config.metadata.name}))),
        "pod_sandboxes")
    assert [x.id for x in one] == [first.id]

    containers = _all(rt.StreamContainers(pb.StreamContainersRequest(
        filter=pb.ContainerFilter(pod_sandbox_id=second.id))), "containers")
    assert {x.metadata.name for x in containers} == {"b", "c"}
    running = _all(rt.StreamContainers(pb.StreamContainersRequest(
        filter=pb.ContainerFilter(state=pb.ContainerStateValue(
            state=pb.CONTAINER_RUNNING)))), "containers")
    assert {a, b} <= {x.id for x in running} and "c" not in {
        x.metadata.name for x in running}

    stats = _all(rt.StreamContainerStats(pb.StreamContainerStatsRequest(
        filter=pb.ContainerStatsFilter(id=a))), "container_stats")
    assert [s.attributes.id for s in stats] == [a] and stats[0].memory.usage_bytes.value > 0
    pods = _all(rt.StreamPodSandboxStats(pb.StreamPodSandboxStatsRequest(
        filter=pb.PodSandboxStatsFilter(id=second.id))), "pod_sandbox_stats")
    assert [s.attributes.id for s in pods] == [second.id]
    assert {c.attributes.id for c in pods[0].linux.containers} >= {b}

    images = _all(cri.images.StreamImages(pb.StreamImagesRequest()), "images")
    assert {i.id for i in images} == {i.id for i in cri.images.ListImages(
        pb.ListImagesRequest()).images}
    busybox = _all(cri.images.StreamImages(pb.StreamImagesRequest(
        filter=pb.ImageFilter(image=pb.ImageSpec(image="busybox")))), "images")
    assert len(busybox) == 1 and any("busybox" in t for t in busybox[0].repo_tags)
    assert _all(rt.StreamContainers(pb.StreamContainersRequest(
        filter=pb.ContainerFilter(id="ab" * 32))), "containers") == []
