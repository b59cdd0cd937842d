"""Image config -> OCI runtime spec: args, env, cwd, user resolution, defaults, annotations."""

from __future__ import annotations

import os

import pytest

from corral.image.runtime_spec import (
    ANNOTATION_PORTS,
    ANNOTATION_STOP_SIGNAL,
    ANNOTATION_VOLUMES,
    NoCommand,
    UserNotFound,
    resolve_user,
    spec_for,
    validate,
)
from corral.oci.image import ImageConfig

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1001:app user:/home/app:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
appgrp:x:1001:
audio:x:29:app,daemon
video:x:44:app
"""


def _config(**config) -> ImageConfig:
    return ImageConfig({"architecture": "amd64", "os": "linux", "config": config,
                        "rootfs": {"type": "layers", "diff_ids": []}})


@pytest.fixture
def rootfs(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


def test_entrypoint_cmd_and_overrides(rootfs):
    config = _config(Entrypoint=["/init"], Cmd=["serve", "--port", "80"])
    assert spec_for(config, rootfs)["process"]["args"] == ["/init", "serve", "--port", "80"]
    assert spec_for(config, rootfs, command=["sh"])["process"]["args"] == ["/init", "sh"]
    # a new entrypoint drops the image's Cmd (docker)
    assert spec_for(config, rootfs, entrypoint=["/bin/sh"])["process"]["args"] == ["/bin/sh"]
    assert spec_for(config, rootfs, entrypoint=[], command=["ls"])["process"]["args"] == ["ls"]
    with pytest.raises(NoCommand):
        spec_for(_config(), rootfs)


def test_env_workdir_and_defaults(rootfs):
    config = _config(Cmd=["sh"], Env=["A=1", "B=2"], WorkingDir="/srv")
    spec = spec_for(config, rootfs, env=["B=3", "C=4"], terminal=True, hostname="h")
    env = spec["process"]["env"]
    assert env[0].startswith("PATH=/usr/local/sbin")  # default PATH added
    assert "A=1" in env and "B=3" in env and "B=2" not in env and "C=4" in env
    assert "TERM=xterm" in env and "HOSTNAME=h" in env
    assert spec["process"]["cwd"] == "/srv"
    assert spec_for(config, rootfs, workdir="/tmp")["process"]["cwd"] == "/tmp"
    assert spec["process"]["terminal"] is True
    own_path = spec_for(_config(Cmd=["sh"], Env=["PATH=/opt/bin"]), rootfs)["process"]["env"]
    assert [e for e in own_path if e.startswith("PATH=")] == ["PATH=/opt/bin"]


@pytest.mark.parametrize("user,expected", [
    ("", {"uid": 0, "gid": 0}),
    ("root", {"uid": 0, "gid": 0}),
    ("app", {"uid": 1000, "gid": 1001, "additionalGids": [29, 44]}),
    ("1000", {"uid": 1000, "gid": 1001, "additionalGids": [29, 44]}),
    ("app:audio", {"uid": 1000, "gid": 29, "additionalGids": [44]}),
    ("daemon:0", {"uid": 1, "gid": 0, "additionalGids": [29]}),
    ("4242", {"uid": 4242, "gid": 0}),
    ("4242:4343", {"uid": 4242, "gid": 4343}),
])
def test_user_resolution(rootfs, user, expected):
    assert resolve_user(rootfs, user) == expected


def test_unknown_user_or_group(rootfs):
    with pytest.raises(UserNotFound, match="nosuch"):
        resolve_user(rootfs, "nosuch")
    with pytest.raises(UserNotFound, match="nogroup"):
        resolve_user(rootfs, "app:nogroup")


def test_user_files_are_read_inside_the_rootfs(tmp_path):
    # /etc in the image is a symlink to the host's /etc: it must resolve inside the rootfs
    rootfs = tmp_path / "rootfs"
    (rootfs / "real").mkdir(parents=True)
    (rootfs / "real" / "passwd").write_text("inside:x:77:77::/:/bin/sh\n")
    os.symlink("/real", rootfs / "etc")
    assert resolve_user(rootfs, "inside") == {"uid": 77, "gid": 77}
    with pytest.raises(UserNotFound):
        resolve_user(rootfs, "daemon")  # the host has one; the image does not
    # no passwd at all: names fail, numbers work
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_user(empty, "5") == {"uid": 5, "gid": 0}


def test_cli_user_wins_over_image_user(rootfs):
    config = _config(Cmd=["sh"], User="app")
    assert spec_for(config, rootfs)["process"]["user"]["uid"] == 1000
    assert spec_for(config, rootfs, user="daemon")["process"]["user"]["uid"] == 1


def test_annotations_and_podman_defaults(rootfs):
    config = _config(Cmd=["sh"], ExposedPorts={"80/tcp": {}, "53/udp": {}},
                     Volumes={"/data": {}}, StopSignal="SIGINT", Labels={"x": "y"})
    spec = spec_for(config, rootfs, annotations={"io.corral.test": "1"})
    notes = spec["annotations"]
    assert notes[ANNOTATION_PORTS] == "53/udp,80/tcp"
    assert notes[ANNOTATION_VOLUMES] == "/data"
    assert notes[ANNOTATION_STOP_SIGNAL] == "SIGINT"
    assert notes["x"] == "y" and notes["io.corral.test"] == "1"
    kinds = [ns["type"] for ns in spec["linux"]["namespaces"]]
    assert set(kinds) == {"pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert "CAP_SYS_ADMIN" not in spec["process"]["capabilities"]["bounding"]
    assert "CAP_CHOWN" in spec["process"]["capabilities"]["effective"]
    assert {m["destination"] for m in spec["mounts"]} >= {"/proc", "/dev", "/dev/pts", "/sys"}
    host = spec_for(config, rootfs, network="host")
    assert "network" not in [ns["type"] for ns in host["linux"]["namespaces"]]


@pytest.mark.parametrize("kwargs", [{}, {"terminal": True, "user": "app", "network": "host"},
                                    {"root_path": "merged", "readonly": True}])
def test_spec_validates(rootfs, kwargs):
    config = _config(Entrypoint=["/init"], Cmd=["x"], Env=["A=1"], WorkingDir="/w",
                     ExposedPorts={"80/tcp": {}}, StopSignal="SIGTERM")
    validate(spec_for(config, rootfs, **kwargs))


def test_relative_workdir_refused(rootfs):
    from corral.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="absolute"):
        spec_for(_config(Cmd=["sh"]), rootfs, workdir="relative")
