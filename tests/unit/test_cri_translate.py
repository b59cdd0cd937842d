"""CRI configs → engine ContainerConfig options (corral.cri.translate), the OCI specs
the engine builds from them, and the gRPC status mapping; no root, no server."""

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
    assert c.network == f"container:{SID}" and c.log_path == "/l/app.log"
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
                                   cpu_period=100000, cpu_shares=512, cpuset_cpus="0",
                                   cpuset_mems="0", memory_swap_limit_in_bytes=128 << 20,
                                   oom_score_adj=100, unified={"memory.high": "1000000"})
    c = translate.container_config(_ctr(linux=pb.LinuxContainerConfig(resources=r)), _pod(),
                                   sandbox_id=SID, image="i", log_path=None)
    assert (c.memory, c.memory_swap, c.cpu_quota, c.cpu_period, c.cpu_shares) == (
        str(64 << 20), str(128 << 20), 50000, 100000, 512)
    assert (c.cpuset_cpus, c.cpuset_mems, c.oom_score_adj, c.cgroup_conf) == (
        "0", "0", 100, ["memory.high=1000000"])
    assert c.cpus is None
    none = translate.container_config(_ctr(linux=pb.LinuxContainerConfig(
        resources=pb.LinuxContainerResources())), _pod(), sandbox_id=SID, image="i",
        log_path=None)
    assert (none.memory, none.cpu_quota, none.oom_score_adj, none.cgroup_conf) == (
        None, None, None, [])


def _spec_of(ccfg, tmp_path, **kw):
    """The OCI spec the engine builds from a translated config (no store: the infra's
    namespaces are resolved to a fake pid)."""
    from corral import records_light
    from corral.engine.config_file import EngineConfig
    from corral.engine.spec import HostInfo, build_spec
    from corral.oci.image import ImageConfig

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True, exist_ok=True)
    image = ImageConfig({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Cmd": ["sh"]}})
    ccfg = records_light.replace(ccfg, network="private" if ccfg.network != "host"
                               else "host")
    return build_spec(image, ccfg, rootfs=rootfs, container_id="c1" * 32,
                      container_dir=tmp_path / "cdir", volumes=object(),
                      defaults=EngineConfig(), host=HostInfo(capabilities=("CAP_KILL",)),
                      **kw)


@pytest.fixture
def infra_pid(monkeypatch):
    from corral.engine import spec as spec_mod

    monkeypatch.setattr(spec_mod, "container_namespace",
                        lambda store, ref, kind, flag: f"/proc/42/ns/{kind}")


def test_container_joins_pod_namespaces_and_sets_extras(tmp_path, infra_pid):
    sc = pb.LinuxContainerSecurityContext(supplemental_groups=[5, 6, 5], masked_paths=["/m"],
                                          readonly_paths=["/r"])
    config = _ctr(linux=pb.LinuxContainerConfig(
        security_context=sc, resources=pb.LinuxContainerResources(oom_score_adj=100)))
    pod = _pod(linux=pb.LinuxPodSandboxConfig(cgroup_parent="/kubepods/pod1"))
    (tmp_path / "shm").mkdir()
    c = translate.container_config(config, pod, sandbox_id=SID, image="i", log_path=None,
                                   cgroup_parent="/kubepods/pod1",
                                   shm_path=str(tmp_path / "shm"))
    assert (c.ipc, c.uts, c.pid) == (f"container:{SID}", f"container:{SID}", None)
    assert c.cgroup_parent == "/kubepods/pod1" and c.group_add == ["5", "6"]
    assert (c.masked_paths, c.readonly_paths, c.oom_score_adj) == (["/m"], ["/r"], 100)
    spec = _spec_of(c, tmp_path, store=object())
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert (shm["type"], shm["source"]) == ("bind", str(tmp_path / "shm"))
    assert {"nosuid", "nodev", "noexec", "rw"} <= set(shm["options"])
    paths = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert paths == {"pid": None, "ipc": "/proc/42/ns/ipc", "uts": "/proc/42/ns/uts",
                     "mount": None, "network": None, "cgroup": None}
    assert "hostname" not in spec
    assert spec["process"]["user"]["additionalGids"] == [5, 6]
    assert spec["process"]["oomScoreAdj"] == 100
    assert (spec["linux"]["maskedPaths"], spec["linux"]["readonlyPaths"]) == (["/m"], ["/r"])
    assert spec["linux"]["cgroupsPath"] == f"/kubepods/pod1/corral-{'c1' * 32}"


def test_host_pid_ipc_pods(tmp_path, infra_pid):
    pod = _pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(pid=pb.NODE, ipc=pb.NODE))))
    c = translate.container_config(_ctr(), pod, sandbox_id=SID, image="i", log_path=None,
                                   shm_path="/pod/shm")
    assert (c.ipc, c.uts, c.pid, c.mounts) == ("host", f"container:{SID}", "host", [])
    spec = _spec_of(c, tmp_path, store=object())
    assert {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]} == {
        "uts": "/proc/42/ns/uts", "mount": None, "network": None, "cgroup": None}
    infra = translate.sandbox_config(pod, image="pause", network=None, command=["/p"],
                                     shm_path="/pod/shm", cgroup_parent="/k/p")
    assert (infra.ipc, infra.pid, infra.uts, infra.mounts, infra.cgroup_parent) == (
        "host", "host", None, [], "/k/p")
    host_net = _pod(linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE))))
    infra = translate.sandbox_config(host_net, image="pause", network=None, command=["/p"],
                                     shm_path="/pod/shm")
    assert (infra.ipc, infra.uts, infra.network) == (None, "host", "host")
    assert infra.mounts == [translate.shm_mount("/pod/shm")]


@pytest.mark.parametrize("ctr_pid, pod_pid, want", [
    (None, None, None), (pb.POD, None, f"container:{SID}"), (pb.NODE, None, "host"),
    (None, pb.POD, f"container:{SID}"), (pb.CONTAINER, pb.NODE, "host")])
def test_pid_modes(ctr_pid, pod_pid, want):
    def ns(pid):
        return pb.NamespaceOption(pid=pid) if pid is not None else None

    ctr = _ctr(linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        namespace_options=ns(ctr_pid)))) if ctr_pid is not None else _ctr()
    pod = _pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=ns(pod_pid)))) if pod_pid is not None else _pod()
    assert translate.container_config(ctr, pod, sandbox_id=SID, image="i",
                                      log_path=None).pid == want
    target = _ctr(linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        namespace_options=pb.NamespaceOption(pid=pb.TARGET, target_id="t1"))))
    assert translate.container_config(target, _pod(), sandbox_id=SID, image="i",
                                      log_path=None).pid == "container:t1"


def test_cgroup_parent_must_be_absolute():
    with pytest.raises(InvalidArgument, match="cgroup_parent 'kubepods.slice'.*absolute"):
        translate.check_cgroup_parent("kubepods.slice")
    with pytest.raises(InvalidArgument, match="LinuxPodSandboxConfig.cgroup_parent"):
        translate.check_cgroup_parent("/a/../b")
    assert translate.check_cgroup_parent("/kubepods/pod1/") == "/kubepods/pod1"


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
