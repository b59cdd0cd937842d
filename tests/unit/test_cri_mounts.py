"""translate: Mount.recursive_read_only and Mount.mount_options, validated in
container_config and passed as engine `--mount` options, which the engine's spec
builder turns into the bind mounts' options."""

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


def test_rro_and_options_become_engine_mount_options(tmp_path):
    from corral.engine.config_file import EngineConfig
    from corral.engine.spec import HostInfo, build_spec
    from corral.oci.image import ImageConfig

    (tmp_path / "h").mkdir()
    (tmp_path / "o").mkdir()
    config = _config(
        pb.Mount(container_path="/data/", host_path=str(tmp_path / "h"), readonly=True,
                 recursive_read_only=True),
        pb.Mount(container_path="/other", host_path=str(tmp_path / "o"),
                 mount_options=["noexec", "nosuid", "noexec"]))
    c = translate.container_config(config, _sandbox(), sandbox_id="s", image="i",
                                   log_path=None)
    assert c.mounts == [
        (f"type=bind,source={tmp_path}/h,target=/data/,bind-propagation=rprivate,readonly,"
         "bind-recursive=readonly"),
        (f"type=bind,source={tmp_path}/o,target=/other,bind-propagation=rprivate,noexec,"
         "nosuid")]
    image = ImageConfig({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Cmd": ["sh"]}})
    (tmp_path / "rootfs").mkdir()
    spec = build_spec(image, {"mounts": c.mounts, "network": "private"},
                      rootfs=tmp_path / "rootfs", container_id="c1" * 32,
                      container_dir=tmp_path / "cdir", defaults=EngineConfig(),
                      host=HostInfo(capabilities=()))
    by_dest = {m["destination"]: m["options"] for m in spec["mounts"]}
    assert by_dest["/data"] == ["rbind", "ro", "rprivate", "rro"]
    assert by_dest["/other"] == ["rbind", "rw", "rprivate", "noexec", "nosuid"]


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
