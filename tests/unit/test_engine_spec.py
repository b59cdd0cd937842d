"""Run/create options -> OCI runtime spec (`corral.engine.spec`), option parsers
(`corral.engine.options`), the default seccomp profile's conversion, and the CLI flags
(`corral.cli.run_options`). No root needed.

Golden files: `tests/unit/data/engine-spec/<case>.json` hold each case's options and
the expected spec (temporary paths written as <TMP>, anonymous volume names as
<ANONYMOUS>, the seccomp section summarized).
`CORRAL_UPDATE_GOLDEN=1 pytest tests/unit/test_engine_spec.py` rewrites them after an
intended change; review the diff.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from corral.engine import options as opt
from corral.engine import seccomp_default as sd
from corral.engine.config_file import EngineConfig
from corral.engine.spec import BindSourceNotFound, HostInfo, build_spec
from corral.engine.volumes import VolumeStore
from corral.errors import InvalidArgument, NotFound
from corral.oci.image import ImageConfig

GOLDEN = Path(__file__).parent / "data" / "engine-spec"
HOST = HostInfo(
    capabilities=("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                  "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                  "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_SYS_ADMIN",
                  "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"),
    swap_limit=True, machine="x86_64", kernel="6.1.0", nofile_hard=1048576,
    resolv_conf="nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.com\n",
    hosts="127.0.0.1 localhost\n",
    devices=({"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232, "fileMode": 0o660,
              "uid": 0, "gid": 0},))
PASSWD = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"
GROUP = "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\naudio:x:29:bob,alice\n"
CID = "c0ffee" + "0" * 58


def image_config(**config) -> ImageConfig:
    return ImageConfig({"architecture": "amd64", "os": "linux",
                        "rootfs": {"type": "layers", "diff_ids": []},
                        "config": {"Cmd": ["sh"], **config}})


@pytest.fixture
def env(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/passwd").write_text(PASSWD)
    (rootfs / "etc/group").write_text(GROUP)
    (rootfs / "srv/data").mkdir(parents=True)
    (rootfs / "srv/data/seed").write_text("from the image\n")
    (tmp_path / "host").mkdir()
    store = tmp_path / "store"
    (store / "storage/containers" / CID).mkdir(parents=True)
    volumes = VolumeStore(store)

    def build(config: dict, image: ImageConfig | None = None,
              defaults: EngineConfig | None = None) -> dict:
        return build_spec(image or image_config(), config, rootfs=rootfs, container_id=CID,
                          container_dir=tmp_path / "cdir", volumes=volumes,
                          defaults=defaults or EngineConfig(), host=HOST)

    build.tmp = tmp_path  # type: ignore[attr-defined]
    build.volumes = volumes  # type: ignore[attr-defined]
    return build


CASES = {
    "defaults": {},
    "nonroot-user-caps": {"user": "alice", "cap_add": ["net_admin"], "cap_drop": ["chown"]},
    "cap-drop-all-add-one": {"cap_drop": ["ALL"], "cap_add": ["CAP_KILL"]},
    "privileged": {"privileged": True},
    "mounts": {"volumes": ["<TMP>/host:/host:ro,rslave", "data:/srv/data", "/anon"],
               "tmpfs": ["/scratch:size=1m,mode=1777,exec"],
               "mounts": ["type=bind,source=<TMP>/host,target=/m,readonly",
                          "type=tmpfs,target=/t,tmpfs-size=2m",
                          "type=volume,source=other,target=/o"]},
    "read-only": {"read_only": True, "tmpfs": ["/run:size=1m"]},
    "resources": {"memory": "512m", "cpus": "1.5", "pids_limit": 100,
                  "ulimits": ["nofile=1024:2048", "nproc=-1"],
                  "extra": {"memory_swap": "1g", "cpu_shares": 512, "shm_size": "128m",
                            "sysctls": ["net.core.somaxconn=1024", "kernel.shmmax=100000"]}},
    "security": {"security_opt": ["no-new-privileges", "seccomp=unconfined",
                                  "mask=/proc/foo", "unmask=/proc/kcore"],
                 "labels": {"app": "web"}, "stop_signal": "SIGINT", "hostname": "web1",
                 "name": "corral-test-web", "env": ["A=1"], "workdir": "/srv"},
    "host-network": {"network": "host", "extra": {"sysctls": []}},
    "devices": {"devices": ["/dev/null:/dev/mynull:rw"]},
}


def _normalize(spec: dict, tmp: Path) -> dict:
    import re

    text = json.dumps(spec).replace(str(tmp), "<TMP>")
    text = re.sub(r"volumes/[0-9a-f]{64}/", "volumes/<ANONYMOUS>/", text)
    text = re.sub(r'"io.corral.volumes": "[^"]*"', lambda m: re.sub(
        r"[0-9a-f]{64}", "<ANONYMOUS>", m.group(0)), text)
    out = json.loads(text)
    seccomp = out.get("linux", {}).get("seccomp")
    if seccomp:
        out["linux"]["seccomp"] = {"defaultAction": seccomp["defaultAction"],
                                   "architectures": seccomp.get("architectures"),
                                   "rules": len(seccomp["syscalls"])}
    return out


def _inputs(config: dict, tmp: Path) -> dict:
    return json.loads(json.dumps(config).replace("<TMP>", str(tmp)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(env, case):
    spec = env(_inputs(CASES[case], env.tmp))
    got = _normalize(spec, env.tmp)
    path = GOLDEN / f"{case}.json"
    if os.environ.get("CORRAL_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"options": CASES[case], "spec": got}, indent=1) + "\n")
    expected = json.loads(path.read_text())
    assert expected["options"] == CASES[case]
    assert got == expected["spec"]


# -- focused checks (what the golden files encode, spelled out) ----------------------------


def test_nonroot_user_gets_supplementary_groups_and_only_added_caps(env):
    spec = env({"user": "alice", "cap_add": ["net_admin"]})
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 29]}
    caps = spec["process"]["capabilities"]
    assert caps["effective"] == caps["ambient"] == ["CAP_NET_ADMIN"]
    assert "CAP_CHOWN" in caps["bounding"]


def test_default_seccomp_depends_on_capabilities(env):
    plain = env({})["linux"]["seccomp"]
    admin = env({"cap_add": ["SYS_ADMIN"]})["linux"]["seccomp"]
    names = {n for rule in plain["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
             for n in rule["names"]}
    admin_names = {n for rule in admin["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
                   for n in rule["names"]}
    assert "bpf" not in names and "bpf" in admin_names
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == 38
    assert plain["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def test_privileged_has_no_seccomp_masks_and_allows_devices(env):
    spec = env({"privileged": True})
    assert "seccomp" not in spec["linux"]
    assert spec["linux"]["maskedPaths"] == [] and spec["linux"]["readonlyPaths"] == []
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert spec["process"]["capabilities"]["bounding"] == list(HOST.capabilities)
    assert spec["linux"]["devices"][0]["path"] == "/dev/kvm"


def test_named_volume_created_and_copied_up(env):
    spec = env({"volumes": ["data:/srv/data:ro"]})
    mount = next(m for m in spec["mounts"] if m["destination"] == "/srv/data")
    assert "ro" in mount["options"]
    assert Path(mount["source"], "seed").read_text() == "from the image\n"
    assert env.volumes.get("data").users == (CID,)
    assert spec["annotations"]["io.corral.volumes"] == "data"


def test_missing_bind_source(env):
    with pytest.raises(BindSourceNotFound, match="bind source path does not exist"):
        env({"volumes": [f"{env.tmp}/nope:/x"]})


def test_duplicate_destination(env):
    with pytest.raises(InvalidArgument, match="duplicate mount destination"):
        env({"volumes": [f"{env.tmp}/host:/x"], "tmpfs": ["/x"]})


def test_user_mount_replaces_default_at_same_path(env):
    spec = env({"tmpfs": ["/dev/shm:size=1m"]})
    shm = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
    assert len(shm) == 1 and shm[0]["source"] == "tmpfs" and "size=1048576" in shm[0]["options"]


def test_mounts_ordered_parents_first(env):
    spec = env({"tmpfs": ["/a/b/c", "/a"]})
    order = [m["destination"] for m in spec["mounts"]]
    assert order.index("/a") < order.index("/a/b/c")


def test_init_prefixes_args(env, monkeypatch, tmp_path):
    init = tmp_path / "catatonit"
    init.write_text("#!/bin/sh\n")
    init.chmod(0o755)
    spec = env({"init": True, "extra": {"init_path": str(init)}})
    assert spec["process"]["args"] == ["/run/corral-init", "--", "sh"]
    bind = next(m for m in spec["mounts"] if m["destination"] == "/run/corral-init")
    assert bind["source"] == str(init) and "ro" in bind["options"]
    with pytest.raises(NotFound, match="init"):
        env({"init": True, "extra": {"init_path": str(tmp_path / "missing")}})


def test_memory_swap_rules(env):
    assert env({"memory": "64m"})["linux"]["resources"]["memory"] == \
        {"limit": 64 << 20, "swap": 128 << 20}
    assert env({"memory": "64m", "extra": {"memory_swap": "-1"}})["linux"]["resources"][
        "memory"] == {"limit": 64 << 20, "swap": -1}
    with pytest.raises(InvalidArgument, match="--memory too"):
        env({"extra": {"memory_swap": "1g"}})
    with pytest.raises(InvalidArgument, match="at least"):
        env({"memory": "64m", "extra": {"memory_swap": "32m"}})
    with pytest.raises(InvalidArgument, match="6MB"):
        env({"memory": "1m"})


def test_pids_limit_unlimited_and_config_default(env):
    assert "pids" not in env({"pids_limit": -1})["linux"]["resources"]
    assert "pids" not in env({"pids_limit": 0})["linux"]["resources"]
    spec = env({}, defaults=EngineConfig(pids_limit=77))
    assert spec["linux"]["resources"]["pids"] == {"limit": 77}


def test_config_defaults_apply_and_flags_win(env):
    defaults = EngineConfig(default_capabilities=("CAP_KILL",),
                            default_ulimits=("nofile=100:200", "nproc=50"),
                            default_sysctls=(), shm_size=1 << 20)
    spec = env({"ulimits": ["nproc=60:70"]}, defaults=defaults)
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_KILL"]
    limits = {r["type"]: (r["soft"], r["hard"]) for r in spec["process"]["rlimits"]}
    assert limits == {"RLIMIT_NOFILE": (100, 200), "RLIMIT_NPROC": (60, 70)}
    assert "sysctl" not in spec["linux"]
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert "size=1048576" in shm["options"]


def test_host_network_skips_net_sysctls_and_refuses_them(env):
    spec = env({"network": "host"})
    assert "sysctl" not in spec["linux"]
    with pytest.raises(InvalidArgument, match="host's network"):
        env({"network": "host", "extra": {"sysctls": ["net.ipv4.ip_forward=1"]}})


def test_etc_files(env):
    env({"hostname": "web1", "name": "corral-test-x"})
    cdir = env.tmp / "cdir"
    assert (cdir / "hostname").read_text() == "web1\n"
    assert "127.0.1.1\tweb1 corral-test-x" in (cdir / "hosts").read_text()
    resolv = (cdir / "resolv.conf").read_text()
    assert "127.0.0.53" not in resolv and "nameserver 10.0.0.2" in resolv


def test_image_volumes_become_anonymous_volumes(env):
    spec = env({}, image=image_config(Volumes={"/var/lib/db": {}}))
    mount = next(m for m in spec["mounts"] if m["destination"] == "/var/lib/db")
    assert mount["source"].startswith(str(env.tmp / "store" / "volumes"))
    assert env.volumes.list()[0].anonymous


def test_stop_signal_from_image_and_bad_signal(env):
    spec = env({}, image=image_config(StopSignal="SIGQUIT"))
    assert spec["annotations"]["io.corral.stopSignal"] == "SIGQUIT"
    with pytest.raises(InvalidArgument, match="signal"):
        env({"stop_signal": "SIGNOPE"})


def test_reads_container_config_objects_and_extra(env):
    class Config:
        def __init__(self) -> None:
            self.command = ["echo", "hi"]
            self.memory = None
            self.extra = {"memory": "64m"}

    spec = env(Config())
    assert spec["process"]["args"] == ["echo", "hi"]
    assert spec["linux"]["resources"]["memory"]["limit"] == 64 << 20


# -- parsers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("512m", 512 << 20), ("1g", 1 << 30), ("65536k", 64 << 20), ("100", 100),
    ("1.5g", int(1.5 * (1 << 30))), ("2MB", 2 << 20), ("3KiB", 3 << 10)])
def test_parse_size(text, expected):
    assert opt.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "m", "12x", "-1m", "1 g b"])
def test_parse_size_bad(text):
    with pytest.raises(InvalidArgument):
        opt.parse_size(text, "--memory")


def test_parse_volume_forms(tmp_path):
    bind = opt.parse_volume("/src:/dst:ro,rslave,Z")
    assert (bind.type, bind.source, bind.destination, bind.readonly, bind.options) == \
        ("bind", "/src", "/dst", True, ("rslave",))
    rel = opt.parse_volume("./here:/dst", cwd=str(tmp_path))
    assert rel.source == str(tmp_path / "here")
    named = opt.parse_volume("data:/var/lib/x/")
    assert (named.type, named.source, named.destination) == ("volume", "data", "/var/lib/x")
    anon = opt.parse_volume("/anon")
    assert (anon.type, anon.source) == ("volume", None)
    assert opt.parse_volume("data:/x:nocopy").nocopy


@pytest.mark.parametrize("text,match", [
    ("", "expected"), ("a:b:c:d", "expected"), ("/src:relative", "absolute"),
    ("/src:/", "root"), ("/src:/dst:ro,rw", "twice"), ("/src:/dst:bogus", "unknown"),
    ("bad name:/x", "volume name"), ("/src:/dst:nocopy", "named volumes")])
def test_parse_volume_errors(text, match):
    with pytest.raises(InvalidArgument, match=match):
        opt.parse_volume(text)


def test_parse_mount():
    m = opt.parse_mount("type=bind,src=/a,dst=/b,readonly,bind-propagation=rshared")
    assert (m.type, m.source, m.destination, m.readonly, m.options) == \
        ("bind", "/a", "/b", True, ("rshared",))
    v = opt.parse_mount("type=volume,source=vol,target=/v,volume-nocopy")
    assert (v.type, v.source, v.nocopy) == ("volume", "vol", True)
    t = opt.parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700")
    assert t.options == ("size=1048576", "mode=700")
    for bad, match in [("type=nfs,target=/x", "not supported"), ("type=bind,target=/x", "source"),
                       ("type=volume,source=v", "target"), ("type=bind,src=/a,dst=/b,foo=1",
                                                            "unknown field"),
                       ("type=tmpfs,src=/a,target=/t", "no source"),
                       ("type=bind,src=/a,target=/b,readonly=maybe", "true or false")]:
        with pytest.raises(InvalidArgument, match=match):
            opt.parse_mount(bad)


def test_parse_tmpfs():
    t = opt.parse_tmpfs("/run:rw,size=64m,mode=1777,noexec")
    assert t.options == ("size=67108864", "mode=1777", "noexec") and not t.readonly
    with pytest.raises(InvalidArgument, match="unknown tmpfs option"):
        opt.parse_tmpfs("/run:bogus")
    with pytest.raises(InvalidArgument, match="octal"):
        opt.parse_tmpfs("/run:mode=999")


def test_parse_ulimit_device_signal_sysctl():
    assert opt.parse_ulimit("nofile=1024:2048") == ("RLIMIT_NOFILE", 1024, 2048)
    assert opt.parse_ulimit("nproc=10") == ("RLIMIT_NPROC", 10, 10)
    assert opt.parse_ulimit("core=-1") == ("RLIMIT_CORE", opt.UNLIMITED, opt.UNLIMITED)
    for bad in ("nofile", "bogus=1", "nofile=2:1", "nofile=x"):
        with pytest.raises(InvalidArgument):
            opt.parse_ulimit(bad)
    assert opt.parse_device("/dev/fuse") == opt.DeviceSpec("/dev/fuse", "/dev/fuse", "rwm")
    assert opt.parse_device("/dev/sda:r") == opt.DeviceSpec("/dev/sda", "/dev/sda", "r")
    assert opt.parse_device("/dev/sda:/dev/xvda:rw") == \
        opt.DeviceSpec("/dev/sda", "/dev/xvda", "rw")
    with pytest.raises(InvalidArgument):
        opt.parse_device("/dev/sda:/dev/x:rwx")
    assert opt.parse_signal("TERM") == 15 and opt.parse_signal("SIGKILL") == 9
    assert opt.parse_signal("2") == 2
    assert opt.parse_sysctls(["net/ipv4/ip_forward=1"]) == {"net.ipv4.ip_forward": "1"}
    with pytest.raises(InvalidArgument):
        opt.parse_sysctls(["novalue"])


def test_security_opts():
    s = opt.parse_security_opts(["seccomp=unconfined", "no-new-privileges",
                                 "label=disable", "mask=/a:/b", "unmask=ALL"])
    assert s.seccomp == "unconfined" and s.no_new_privileges and s.label_disable
    assert s.mask == ("/a", "/b") and s.unmask == ("ALL",)
    assert opt.parse_security_opts(["no-new-privileges=false"]).no_new_privileges is False
    assert opt.parse_security_opts(["seccomp:/p.json"]).seccomp == "/p.json"
    with pytest.raises(InvalidArgument, match="unknown security option"):
        opt.parse_security_opts(["bogus=1"])


def test_capabilities():
    assert opt.normalize_capability("net_admin") == "CAP_NET_ADMIN"
    assert opt.normalize_capability("all") == "ALL"
    with pytest.raises(InvalidArgument, match="unknown capability"):
        opt.normalize_capability("CAP_FLY")
    every = ["CAP_A", "CAP_B", "CAP_CHOWN"]
    assert opt.merge_capabilities(["CAP_CHOWN"], ["ALL"], ["chown"], every) == \
        ["CAP_A", "CAP_B"]
    assert opt.merge_capabilities(["CAP_CHOWN", "CAP_KILL"], ["kill"], ["ALL"], every) == \
        ["CAP_KILL"]


def test_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("UNSET_THING", raising=False)
    path = tmp_path / "env"
    path.write_text("# c\nA=1\n  B=two words\nFROM_HOST\nUNSET_THING\nC=\n")
    assert opt.read_env_file(path) == ["A=1", "B=two words", "FROM_HOST=h", "C="]
    (tmp_path / "bad").write_text("BAD NAME=1\n")
    with pytest.raises(InvalidArgument, match="whitespace"):
        opt.read_env_file(tmp_path / "bad")
    with pytest.raises(NotFound):
        opt.read_env_file(tmp_path / "missing")


# -- seccomp conversion -------------------------------------------------------------------------


def test_seccomp_conversion_conditions():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["swapon"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["swapon"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["new_call"], "action": "SCMP_ACT_ALLOW",
             "includes": {"minKernel": "6.5"}},
            {"names": ["x"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        ]}
    plain = sd.to_oci(profile, [], machine="aarch64", kernel="6.1.0-13-amd64")
    assert plain["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    names = [(r["names"], r["action"]) for r in plain["syscalls"]]
    assert names == [(["read"], "SCMP_ACT_ALLOW"), (["swapon"], "SCMP_ACT_ERRNO"),
                     (["x"], "SCMP_ACT_ALLOW")]
    admin = sd.to_oci(profile, ["sys_admin"], machine="x86_64", kernel="6.6")
    names = [r["names"][0] for r in admin["syscalls"]]
    assert names == ["read", "arch_prctl", "swapon", "new_call", "x"]
    assert "architectures" not in admin  # no archMap entry for x86_64
    assert admin["syscalls"][-1]["args"][0]["op"] == "SCMP_CMP_EQ"


def test_seccomp_default_profile_validates():
    from corral.linux.seccomp import plan, validate

    section = sd.default_profile(["CAP_CHOWN"], machine="x86_64", kernel="6.1")
    validate(section)
    plan(section)
    names = {n for r in section["syscalls"] for n in r["names"]}
    assert "swapoff" in names and "read" in names


def test_seccomp_load(tmp_path):
    with pytest.raises(NotFound):
        sd.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(sd.SeccompProfileError, match="defaultAction"):
        sd.load(tmp_path / "bad.json")


# -- CLI flags ------------------------------------------------------------------------------------


def _parse(argv: list[str]) -> dict:
    from corral.cli.run_options import add_run_options, options_from_args

    parser = argparse.ArgumentParser()
    add_run_options(parser)
    return options_from_args(parser.parse_args(argv))


def test_cli_run_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "env").write_text("A=1\n")
    values = _parse(["-v", "./d:/d:ro", "-v", "vol:/v", "--mount",
                     "type=bind,source=rel,target=/r", "--tmpfs", "/t:size=1m",
                     "--env-file", "env", "--cap-add", "net_admin", "--cap-drop", "ALL",
                     "--security-opt", "no-new-privileges", "--privileged", "--init",
                     "-m", "64m", "--memory-swap", "-1", "--cpus", "0.5", "-c", "100",
                     "--pids-limit", "10", "--ulimit", "nofile=5:6", "--device", "/dev/null",
                     "--sysctl", "net.core.somaxconn=5", "--shm-size", "1m"])
    assert values["volumes"] == [f"{tmp_path}/d:/d:ro", "vol:/v"]
    assert values["mounts"] == [f"type=bind,source={tmp_path}/rel,target=/r"]
    assert values["env_file"] == [str(tmp_path / "env")]
    assert values["cap_add"] == ["CAP_NET_ADMIN"] and values["cap_drop"] == ["ALL"]
    assert values["privileged"] and values["init"]
    assert (values["memory"], values["cpus"], values["pids_limit"]) == ("64m", "0.5", 10)
    assert "extra" not in values  # fields of ContainerConfig now
    assert {k: values[k] for k in ("memory_swap", "cpu_shares", "sysctls", "shm_size")} == {
        "memory_swap": "-1", "cpu_shares": 100, "sysctls": ["net.core.somaxconn=5"],
        "shm_size": "1m"}


@pytest.mark.parametrize("argv,match", [
    (["-v", "/a:relative"], "absolute"), (["--memory", "lots"], "invalid size"),
    (["--cap-add", "fly"], "unknown capability"), (["--ulimit", "x=1"], "NAME="),
    (["--env-file", "/nonexistent/env"], "no such file"), (["--cpus", "-1"], "positive"),
    (["--security-opt", "seccomp=/nonexistent.json"], "does not exist")])
def test_cli_run_options_errors(argv, match):
    with pytest.raises((InvalidArgument, NotFound), match=match):
        _parse(argv)


# -- namespaces, cgroup parent, process and mount options (the CRI's needs) ----------------


def _ns(spec: dict) -> dict:
    return {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}


def test_cgroup_parent_sets_cgroups_path(env):
    assert "cgroupsPath" not in env({})["linux"]
    spec = env({"cgroup_parent": "/kubepods/pod1"})
    assert spec["linux"]["cgroupsPath"] == f"/kubepods/pod1/corral-{CID}"
    # relative: from the hierarchy root, as podman's cgroupfs manager
    assert env({"cgroup_parent": "corral-test-xyz/"})["linux"]["cgroupsPath"] == \
        f"/corral-test-xyz/corral-{CID}"


@pytest.mark.parametrize("value", ["/a/../b", "/", "a b", "/x/./y"])
def test_bad_cgroup_parent_names_the_flag(env, value):
    with pytest.raises(InvalidArgument, match="--cgroup-parent"):
        env({"cgroup_parent": value})


def test_host_namespaces_are_dropped(env):
    spec = env({"ipc": "host", "uts": "host", "pid": "host"})
    assert set(_ns(spec)) == {"network", "mount", "cgroup"}
    assert "hostname" not in spec  # the host's UTS namespace keeps its hostname
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert (shm["type"], shm["source"]) == ("bind", "/dev/shm")  # the host's, as podman
    private = env({"ipc": "private", "uts": "", "pid": None})
    assert set(_ns(private)) == {"pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert private["hostname"] == CID[:12]


def test_namespace_paths_are_joined(env, tmp_path):
    nsfile = tmp_path / "ipcns"
    nsfile.write_text("")
    spec = env({"ipc": f"ns:{nsfile}", "uts": f"ns:{nsfile}", "pid": str(nsfile)})
    assert _ns(spec)["ipc"] == _ns(spec)["uts"] == _ns(spec)["pid"] == str(nsfile)
    assert "hostname" not in spec
    with pytest.raises(NotFound, match="--pid ns:/corral-test-none"):
        env({"pid": "ns:/corral-test-none"})


@pytest.mark.parametrize("field,value,match", [
    ("ipc", "bogus", "--ipc 'bogus': expected private, shareable, host"),
    ("uts", "shareable", "--uts 'shareable'"),
    ("pid", "container:", "--pid container: needs"),
    ("ipc", "ns:relative", "must be absolute")])
def test_bad_namespace_modes(env, field, value, match):
    with pytest.raises(InvalidArgument, match=match):
        env({field: value})


def testcontainer_namespaces_are_joined_through_the_running_target(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from corral.engine import engine as engine_mod
    from corral.engine.spec import container_namespace
    from corral.errors import FailedPrecondition

    targets = {"web": SimpleNamespace(name="web", status="running",
                                      state=SimpleNamespace(pid=4242)),
               "gone": SimpleNamespace(name="gone", status="exited",
                                       state=SimpleNamespace(pid=None))}

    def get(self, ref):
        if ref not in targets:
            raise NotFound(ref)
        return targets[ref]

    monkeypatch.setattr(engine_mod.Engine, "get", get)
    store = SimpleNamespace(root=tmp_path)
    assert container_namespace(store, "web", "ipc", "--ipc") == "/proc/4242/ns/ipc"
    with pytest.raises(FailedPrecondition, match="--pid container:gone: .* not running"):
        container_namespace(store, "gone", "pid", "--pid")
    with pytest.raises(NotFound, match="--uts container:nope: no such container"):
        container_namespace(store, "nope", "uts", "--uts")


def test_ipc_sysctls_need_a_private_ipc_namespace(env):
    assert env({"sysctls": ["kernel.shmmax=1000"]})["linux"]["sysctl"]["kernel.shmmax"] == \
        "1000"
    with pytest.raises(InvalidArgument, match="kernel.shmmax: only with a private IPC"):
        env({"ipc": "host", "sysctls": ["kernel.shmmax=1000"]})


def test_group_add_oom_score_adj_and_exact_paths(env):
    spec = env({"user": "alice", "group_add": ["audio", "5", "wheel"], "oom_score_adj": 100,
                "masked_paths": ["/m"], "readonly_paths": []})
    assert spec["process"]["user"]["additionalGids"] == [10, 29, 5]
    assert spec["process"]["oomScoreAdj"] == 100
    assert (spec["linux"]["maskedPaths"], spec["linux"]["readonlyPaths"]) == (["/m"], [])
    default = env({})
    assert "oomScoreAdj" not in default["process"] and default["linux"]["maskedPaths"]
    assert env({"privileged": True, "masked_paths": ["/m"]})["linux"]["maskedPaths"] == []
    with pytest.raises(NotFound, match="--group-add video: no such group"):
        env({"group_add": ["video"]})
    with pytest.raises(InvalidArgument, match="--oom-score-adj: 1001 is not within"):
        env({"oom_score_adj": 1001})
    with pytest.raises(InvalidArgument, match="masked_paths: 'rel' is not an absolute"):
        env({"masked_paths": ["rel"]})


def test_cpu_period_quota_cpuset_mems_and_cgroup_conf(env):
    res = env({"cpu_quota": 50000, "cpu_period": 200000, "cpuset_mems": "0",
               "cpuset_cpus": "0-1", "cpu_shares": 2,
               "cgroup_conf": ["memory.high=1048576"]})["linux"]["resources"]
    assert res["cpu"] == {"quota": 50000, "period": 200000, "shares": 2, "cpus": "0-1",
                          "mems": "0"}
    assert res["unified"] == {"memory.high": "1048576"}
    assert env({"cpu_quota": 20000})["linux"]["resources"]["cpu"] == {
        "quota": 20000, "period": 100000}
    for config, match in (({"cpus": "1", "cpu_quota": 1000}, "--cpus conflicts"),
                          ({"cpu_period": 10}, "--cpu-period: 10 is not within"),
                          ({"cpuset_mems": "zero"}, "--cpuset-mems 'zero'"),
                          ({"cgroup_conf": ["nodot=1"]}, "--cgroup-conf 'nodot'")):
        with pytest.raises(InvalidArgument, match=match):
            env(config)


def test_bind_mount_options_and_recursive_read_only(env):
    host = env.tmp / "host"
    spec = env({"mounts": [(f"type=bind,source={host},target=/a,readonly,"
                            "bind-recursive=readonly,noexec,nosuid"),
                           (f"type=bind,source={host},target=/b,bind-propagation=rslave,"
                            "nodev,norelatime")],
                "volumes": [f"{host}:/c:rro", f"{host}:/d:ro,noexec,nostrictatime"]})
    options = {m["destination"]: m["options"] for m in spec["mounts"]}
    assert options["/a"] == ["rbind", "ro", "rro", "noexec", "nosuid", "rprivate"]
    assert options["/b"] == ["rbind", "rw", "rslave", "nodev", "norelatime"]
    assert options["/c"] == ["rbind", "ro", "rro", "rprivate"]
    assert options["/d"] == ["rbind", "ro", "noexec", "nostrictatime", "rprivate"]


@pytest.mark.parametrize("config,match", [
    ({"volumes": ["/tmp:/x:rro,rw"]}, "rro \\(recursive read-only\\) conflicts with rw"),
    ({"volumes": ["/tmp:/x:rro,rshared"]}, "needs private propagation, not rshared"),
    ({"mounts": ["type=bind,source=/tmp,target=/x,readonly=false,bind-recursive=readonly"]},
     "conflicts with rw"),
    ({"mounts": ["type=bind,source=/tmp,target=/x,bind-recursive=sometimes"]},
     "bind-recursive 'sometimes' is not one of")])
def test_bad_recursive_read_only(env, config, match):
    with pytest.raises(InvalidArgument, match=match):
        env(config)


def test_log_path_is_checked(env, tmp_path):
    env({"log_path": str(tmp_path / "c.log")})
    with pytest.raises(InvalidArgument, match="log_path 'rel.log': must be an absolute"):
        env({"log_path": "rel.log"})
    with pytest.raises(NotFound, match="the directory /corral-test-none does not exist"):
        env({"log_path": "/corral-test-none/c.log"})


def test_options_kept_under_extra_by_older_records_still_apply(env):
    from corral.engine.config import ContainerConfig

    config = ContainerConfig(image="x", extra={"sysctls": ["net.core.somaxconn=7"],
                                               "shm_size": "8m"})
    spec = env(config)
    assert spec["linux"]["sysctl"]["net.core.somaxconn"] == "7"
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert f"size={8 << 20}" in shm["options"]


def test_cli_namespace_cgroup_and_process_flags():
    values = _parse(["--cgroup-parent", "corral-test-xyz", "--ipc", "container:web",
                     "--uts", "host", "--pid", "ns:/proc/1/ns/pid", "--oom-score-adj", "-5",
                     "--group-add", "wheel", "--group-add", "7", "--cpu-period", "50000",
                     "--cpu-quota", "25000", "--cpuset-mems", "0",
                     "--cgroup-conf", "memory.high=1g"])
    assert values["cgroup_parent"] == "/corral-test-xyz"
    assert (values["ipc"], values["uts"], values["pid"]) == ("container:web", "host",
                                                             "ns:/proc/1/ns/pid")
    assert values["oom_score_adj"] == -5 and values["group_add"] == ["wheel", "7"]
    assert (values["cpu_period"], values["cpu_quota"], values["cpuset_mems"]) == (
        50000, 25000, "0")
    assert values["cgroup_conf"] == ["memory.high=1g"]


@pytest.mark.parametrize("argv,match", [
    (["--cgroup-parent", "../up"], "--cgroup-parent '../up'"),
    (["--ipc", "sideways"], "--ipc 'sideways'"), (["--pid", "container:"], "--pid container:"),
    (["--oom-score-adj", "-2000"], "--oom-score-adj"),
    (["--cgroup-conf", "memory.high"], "--cgroup-conf")])
def test_cli_namespace_cgroup_flag_errors(argv, match):
    with pytest.raises(InvalidArgument, match=match):
        _parse(argv)
