"""CRI configs → engine ContainerConfig and OCI spec patches (corral.cri.translate),
and the gRPC status mapping; no root, no server."""

from __future__ import annotations

import pytest

pytest.importorskip("grpc", reason="needs grpcio (scripts/setup)")
try:
    from corral.cri._gen import api_pb2 as pb
except ImportError:  # pragma: no cover - scripts/setup generates them
    pytest.skip("CRI stubs not generated (run scripts/gen-cri)", allow_module_level=True)

import grpc

from corral.cri import translate
from corral.cri.errors import DeadlineExceeded, status_code
from corral.cri.records import ContainerNotFound, Records, SandboxNotFound
from corral.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

SID = "ab" * 32


def _pod(**kw) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(
        name="web", namespace="default", uid="u-1", attempt=2), **kw)


def _ctr(**kw) -> pb.ContainerConfig:
    kw.setdefault("image", pb.ImageSpec(image="busybox"))
    return pb.ContainerConfig(metadata=pb.ContainerMetadata(name="app"), **kw)


def test_sandbox_metadata_required():
    with pytest.raises(InvalidArgument, match="metadata is required"):
        translate.check_sandbox_metadata(pb.PodSandboxConfig())
    with pytest.raises(InvalidArgument, match="uid"):
        translate.check_sandbox_metadata(pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="a", namespace="b")))


def test_sandbox_config_network_ports_dns_hostname():
    config = _pod(hostname="h1", dns_config=pb.DNSConfig(
        servers=["10.0.0.10"], searches=["svc.cluster.local"], options=["ndots:5"]),
        port_mappings=[pb.PortMapping(protocol=pb.UDP, container_port=53, host_port=5353,
                                      host_ip="127.0.0.1"),
                       pb.PortMapping(container_port=80, host_port=0)])
    c = translate.sandbox_config(config, image="pause", network="net1", command=["/p"])
    assert (c.network, c.networks, c.hostname) == ("bridge", ["net1"], "h1")
    assert c.publish == ["127.0.0.1:5353:53/udp"]
    assert (c.dns, c.dns_search, c.dns_options) == (["10.0.0.10"], ["svc.cluster.local"],
                                                    ["ndots:5"])
    assert c.entrypoint == ["/p"] and c.labels[translate.LABEL_KIND] == "sandbox"
    assert translate.sandbox_name(config) == "k8s_POD_web_default_u-1_2"


def test_sandbox_host_network():
    config = _pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.NODE))),
        port_mappings=[pb.PortMapping(container_port=80, host_port=8080)])
    c = translate.sandbox_config(config, image="pause", network="net1", command=["/p"])
    assert (c.network, c.networks, c.publish, c.hostname) == ("host", [], [], None)


def test_container_command_args_env_mounts_devices():
    config = _ctr(command=["sh", "-c"], args=["echo hi"], working_dir="/w",
                  envs=[pb.KeyValue(key="A", value=b"1")],
                  mounts=[pb.Mount(container_path="/data", host_path="/tmp", readonly=True,
                                   propagation=pb.PROPAGATION_HOST_TO_CONTAINER)],
                  devices=[pb.Device(container_path="/dev/x", host_path="/dev/null",
                                     permissions="rw")])
    c = translate.container_config(config, _pod(), sandbox_id=SID, image="img",
                                   log_path="/l/app.log")
    assert (c.entrypoint, c.command, c.workdir, c.env) == (["sh", "-c"], ["echo hi"], "/w",
                                                           ["A=1"])
    assert c.network == f"container:{SID}" and c.extra["log_path"] == "/l/app.log"
    assert c.mounts == ["type=bind,source=/tmp,target=/data,bind-propagation=rslave,readonly"]
    assert c.devices == ["/dev/null:/dev/x:rw"]
    only_args = translate.container_config(_ctr(args=["x"]), _pod(), sandbox_id=SID,
                                           image="img", log_path=None)
    assert (only_args.entrypoint, only_args.command) == (None, ["x"])


@pytest.mark.parametrize("sc, match", [
    (pb.LinuxContainerSecurityContext(run_as_group=pb.Int64Value(value=1)), "run_as_group"),
    (pb.LinuxContainerSecurityContext(run_as_user=pb.Int64Value(value=1),
                                      run_as_username="bob"), "exclusive"),
    (pb.LinuxContainerSecurityContext(run_as_user=pb.Int64Value(value=-1)), "negative"),
    (pb.LinuxContainerSecurityContext(seccomp=pb.SecurityProfile(
        profile_type=pb.SecurityProfile.Localhost)), "localhost_ref"),
    (pb.LinuxContainerSecurityContext(seccomp=pb.SecurityProfile(
        profile_type=pb.SecurityProfile.Localhost, localhost_ref="/no/such.json")),
     "not found"),
    (pb.LinuxContainerSecurityContext(privileged=True), "not privileged"),
    (pb.LinuxContainerSecurityContext(capabilities=pb.Capability(add_capabilities=[""])),
     "empty capability"),
])
def test_invalid_security_context(sc, match):
    config = _ctr(linux=pb.LinuxContainerConfig(security_context=sc))
    with pytest.raises(InvalidArgument, match=match):
        translate.container_config(config, _pod(), sandbox_id=SID, image="i", log_path=None)


def test_security_context_options():
    sc = pb.LinuxContainerSecurityContext(
        run_as_user=pb.Int64Value(value=1000), run_as_group=pb.Int64Value(value=1001),
        readonly_rootfs=True, no_new_privs=True,
        capabilities=pb.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["ALL"]),
        seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined))
    c = translate.container_config(_ctr(linux=pb.LinuxContainerConfig(security_context=sc)),
                                   _pod(), sandbox_id=SID, image="i", log_path=None)
    assert (c.user, c.read_only) == ("1000:1001", True)
    assert (c.cap_add, c.cap_drop) == (["CAP_NET_ADMIN"], ["ALL"])
    assert c.security_opt == ["no-new-privileges", "seccomp=unconfined"]
    named = translate.container_config(_ctr(linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(run_as_username="nobody"))),
        _pod(), sandbox_id=SID, image="i", log_path=None)
    assert named.user == "nobody"


def test_resources():
    r = pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_quota=50000,
                                   cpu_period=100000)
    c = translate.container_config(_ctr(linux=pb.LinuxContainerConfig(resources=r)), _pod(),
                                   sandbox_id=SID, image="i", log_path=None)
    assert (c.memory, c.cpus) == (str(64 << 20), "0.500")


def test_patch_spec_joins_pod_namespaces_and_sets_extras():
    spec = {"hostname": "x", "process": {"user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount",
                                                           "network")]}}
    sc = pb.LinuxContainerSecurityContext(supplemental_groups=[5, 6], masked_paths=["/m"],
                                          readonly_paths=["/r"])
    config = _ctr(linux=pb.LinuxContainerConfig(
        security_context=sc, resources=pb.LinuxContainerResources(oom_score_adj=100)))
    pod = _pod(linux=pb.LinuxPodSandboxConfig(cgroup_parent="/kubepods/pod1"))
    spec["mounts"] = [{"destination": "/dev/shm", "type": "tmpfs", "source": "shm"}]
    translate.patch_spec(spec, config=config, sandbox=pod, infra_pid=42,
                         cgroup_parent="/kubepods/pod1", container_id="c1",
                         shm_path="/b/shm")
    assert spec["mounts"][0]["source"] == "/b/shm" and spec["mounts"][0]["type"] == "bind"
    paths = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert paths == {"pid": None, "ipc": "/proc/42/ns/ipc", "uts": "/proc/42/ns/uts",
                     "mount": None, "network": None}
    assert "hostname" not in spec
    assert spec["process"]["user"]["additionalGids"] == [5, 6]
    assert spec["process"]["oomScoreAdj"] == 100
    assert (spec["linux"]["maskedPaths"], spec["linux"]["readonlyPaths"]) == (["/m"], ["/r"])
    assert spec["linux"]["cgroupsPath"] == "/kubepods/pod1/corral-c1"


def test_patch_spec_host_pid_ipc():
    spec = {"linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")]}}
    pod = _pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(pid=pb.NODE, ipc=pb.NODE))))
    translate.patch_spec(spec, config=_ctr(), sandbox=pod, infra_pid=42, cgroup_parent=None,
                         container_id="c1")
    assert {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]} == {
        "uts": "/proc/42/ns/uts", "mount": None}


def test_cgroup_parent_must_be_absolute():
    with pytest.raises(InvalidArgument, match="absolute"):
        translate.cgroup_path("kubepods.slice", "c1")


@pytest.mark.parametrize("exc, code", [
    (NotFound("x"), grpc.StatusCode.NOT_FOUND),
    (SandboxNotFound("x"), grpc.StatusCode.NOT_FOUND),
    (AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
    (InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (ValueError("x"), grpc.StatusCode.UNKNOWN),
])
def test_status_codes(exc, code):
    assert status_code(exc) == code


def test_records_prefix_and_not_found(tmp_path):
    records = Records(tmp_path)
    records.save_sandbox({"id": SID, "created_at": 1})
    records.save_container({"id": "cd" * 32, "sandbox_id": SID, "created_at": 2})
    assert records.sandbox(SID[:6])["id"] == SID
    assert records.container_id("cd") == "cd" * 32
    with pytest.raises(SandboxNotFound):
        records.sandbox("ef" * 32)
    with pytest.raises(ContainerNotFound):
        records.container("ef")
    with pytest.raises(InvalidArgument):
        records.sandbox("../etc")
    records.drop_sandbox(SID)
    records.drop_sandbox(SID)
    assert records.all_sandboxes() == []


def test_apparmor_profile_needs_apparmor(monkeypatch):
    sc = pb.LinuxContainerSecurityContext(apparmor=pb.SecurityProfile(
        profile_type=pb.SecurityProfile.Localhost, localhost_ref="my-profile"))
    config = _ctr(linux=pb.LinuxContainerConfig(security_context=sc))
    monkeypatch.setattr(translate, "apparmor_enabled", lambda: False)
    with pytest.raises(InvalidArgument, match="AppArmor is not enabled"):
        translate.container_config(config, _pod(), sandbox_id=SID, image="i", log_path=None)
    monkeypatch.setattr(translate, "apparmor_enabled", lambda: True)
    c = translate.container_config(config, _pod(), sandbox_id=SID, image="i", log_path=None)
    assert c.security_opt == ["apparmor=my-profile"]
    unconfined = _ctr(linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        apparmor=pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined))))
    assert translate.container_config(unconfined, _pod(), sandbox_id=SID, image="i",
                                      log_path=None).security_opt == []
