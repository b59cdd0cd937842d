"""translate: Mount.recursive_read_only and Mount.mount_options, validated in
container_config and applied to the engine's bind mounts by patch_spec."""

from __future__ import annotations

import pytest

pb = pytest.importorskip("corral.cri._gen.api_pb2", reason="CRI stubs not generated")

from corral.cri import translate
from corral.errors import InvalidArgument


def _sandbox():
    return pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="p", namespace="n",
                                                              uid="u"))


def _config(*mounts):
    return pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"),
                              image=pb.ImageSpec(image="busybox"), mounts=list(mounts))


def _spec():
    return {"mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": []},
        {"destination": "/data", "type": "bind", "source": "/h",
         "options": ["rbind", "ro", "rprivate"]},
        {"destination": "/other", "type": "bind", "source": "/o",
         "options": ["rbind", "rw", "exec", "rprivate"]}]}


def test_rro_and_options_are_added_to_the_matching_bind_mount():
    config = _config(
        pb.Mount(container_path="/data/", host_path="/h", readonly=True,
                 recursive_read_only=True),
        pb.Mount(container_path="/other", host_path="/o", mount_options=["noexec", "nosuid"]))
    spec = translate.patch_spec(_spec(), config=config, sandbox=_sandbox(), infra_pid=None,
                                cgroup_parent=None, container_id="c1")
    by_dest = {m["destination"]: m["options"] for m in spec["mounts"]}
    assert by_dest["/data"] == ["rbind", "ro", "rprivate", "rro"]
    assert by_dest["/other"] == ["rbind", "rw", "rprivate", "noexec", "nosuid"]  # exec gone
    assert by_dest["/proc"] == []


@pytest.mark.parametrize(("mount", "words"), [
    (pb.Mount(container_path="/d", host_path="/tmp", recursive_read_only=True),
     "Mount /d: recursive_read_only needs readonly and PROPAGATION_PRIVATE"),
    (pb.Mount(container_path="/d", host_path="/tmp", readonly=True, recursive_read_only=True,
              propagation=pb.PROPAGATION_BIDIRECTIONAL),
     "Mount /d: recursive_read_only needs readonly"),
    (pb.Mount(container_path="/d", host_path="/tmp", mount_options=["noexec", "rw"]),
     "Mount /d: mount_options 'rw' is not one of"),
])
def test_bad_mounts_are_invalid_naming_the_mount(mount, words):
    with pytest.raises(InvalidArgument) as info:
        translate.container_config(_config(mount), _sandbox(), sandbox_id="s", image="i",
                                   log_path=None)
    assert words in str(info.value)
