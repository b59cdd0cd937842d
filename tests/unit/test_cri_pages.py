"""runtime.pages / runtime.filtered: how the Stream* list calls page a List* result."""

from __future__ import annotations

import pytest

pb = pytest.importorskip("corral.cri._gen.api_pb2", reason="CRI stubs not generated")

from corral.cri.runtime import filtered, pages


def test_pages_split_into_messages_of_at_most_size():
    got = list(pages(range(250), list, size=100))
    assert [len(chunk) for chunk in got] == [100, 100, 50]
    assert [x for chunk in got for x in chunk] == list(range(250))
    assert list(pages([], list)) == []


def test_filtered_copies_the_filter_only_when_set():
    assert not filtered(pb.ListContainersRequest, pb.StreamContainersRequest()).HasField(
        "filter")
    request = pb.StreamContainersRequest(filter=pb.ContainerFilter(id="abc"))
    assert filtered(pb.ListContainersRequest, request).filter.id == "abc"
