"""Corral's CRI server against the reference, containerd 1.6's CRI plugin (Debian's
containerd, runc v2 shim), driven by the same generated gRPC client as kubelet
would: the same pod scenario must behave the same on both, and bad requests must get
the same gRPC status codes.

containerd runs privately (its own root, state, socket, CNI config on its own bridge
`corral-test-XYZ`, catatonit pause image and busybox imported from corral's store with
`ctr images import`); corral serves a temp store on the session's test network.
Everything is removed at the end. Skipped without containerd (apt-get install
containerd; scripts/setup installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

grpc = pytest.importorskip("grpc", reason="needs grpcio (scripts/setup)")
try:
    from corral.cri._gen import api_pb2 as pb
    from corral.cri._gen import api_pb2_grpc as pb_grpc
except ImportError:  # pragma: no cover - scripts/setup generates them
    pytest.skip("CRI stubs not generated (run scripts/gen-cri)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")
CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")

pytestmark = [
    pytest.mark.interop, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(CONTAINERD is None or CTR is None,
                       reason="needs containerd and ctr (apt-get install containerd)"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="containerd needs runc"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/catatonit"), reason="needs catatonit"),
]


def _wait(pred, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s")


class Endpoint:
    def __init__(self, name: str, address: str, image: str) -> None:
        self.name, self.image = name, image
        self.channel = grpc.insecure_channel(address)
        self.rt = pb_grpc.RuntimeServiceStub(self.channel)
        self.im = pb_grpc.ImageServiceStub(self.channel)


@pytest.fixture(scope="module")
def endpoints():
    tmp = Path(tempfile.mkdtemp(prefix="corral-test-cri-ctd-"))
    tag = uuid.uuid4().hex
    net, bridge = f"corral-test-{tag[:8]}", f"corral-test-{tag[8:11]}"
    root = tmp / "corral"
    procs: list[subprocess.Popen] = []
    made_net = False
    try:
        c = [CORRAL, "--root", str(root)]
        subprocess.run(c + ["image", "busybox"], check=True, capture_output=True)
        subprocess.run([str(REPO / ".venv" / "bin" / "python3"), "-c",
                        ("import sys; from corral.storage import Store; "
                        "from corral.cri.pause import ensure; ensure(Store.open(sys.argv[1]))"),
                        str(root)], check=True, capture_output=True)
        subprocess.run(c + ["save", "-o", str(tmp / "images.tar"), "busybox",
                            "localhost/corral/pause:catatonit"], check=True, capture_output=True)
        # containerd's CNI list: a corral network's (same plugins), on its own bridge
        for third in range(120, 160):
            r = subprocess.run(c + ["network", "create", "--interface-name", bridge,
                                    "--subnet", f"10.99.{third}.0/24", net],
                               capture_output=True, text=True, check=False)
            if r.returncode == 0:
                made_net = True
                break
        if not made_net:
            pytest.skip("no free subnet for containerd's test network")
        info = json.loads(subprocess.run(c + ["network", "inspect", net], check=True,
                                         capture_output=True, text=True).stdout)[0]
        conf = info.get("cni_config") or info.get("CNIConfig") or info["config"]
        (tmp / "net.d").mkdir()
        (tmp / "net.d" / "10-test.conflist").write_text(json.dumps(conf))
        ctd = tmp / "ctd"
        (tmp / "config.toml").write_text(f"""version = 2
root = "{ctd}/root"
state = "{ctd}/state"
[grpc]
  address = "{ctd}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/corral/pause:catatonit"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{tmp}/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
""")
        log = open(tmp / "containerd.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen([CONTAINERD, "--config", str(tmp / "config.toml")],
                                      stdout=log, stderr=log, start_new_session=True))
        _wait(lambda: (ctd / "containerd.sock").exists(), what="containerd's socket")
        subprocess.run([CTR, "--address", str(ctd / "containerd.sock"), "-n", "k8s.io",
                        "images", "import", str(tmp / "images.tar")], check=True,
                       capture_output=True, timeout=120)
        server = subprocess.Popen(c + ["cri", "serve", "--listen", f"unix://{tmp}/corral.sock"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(server)
        assert server.stdout.readline().startswith("listening on")
        yield {"corral": Endpoint("corral", f"unix://{tmp}/corral.sock", "busybox"),
               "containerd": Endpoint("containerd", f"unix://{ctd}/containerd.sock",
                                      "docker.io/library/busybox:latest")}
    finally:
        for ep_address in (f"unix://{tmp}/corral.sock", f"unix://{tmp}/ctd/containerd.sock"):
            try:
                rt = pb_grpc.RuntimeServiceStub(grpc.insecure_channel(ep_address))
                for pod in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items:
                    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id),
                                      timeout=30)
                    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id),
                                        timeout=30)
            except grpc.RpcError:
                pass
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        subprocess.run([CORRAL, "--root", str(root), "rm", "-af"], capture_output=True,
                       check=False)
        if made_net:
            subprocess.run([CORRAL, "--root", str(root), "network", "rm", "-f", net],
                           capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        shutil.rmtree(f"/var/lib/cni/networks/{net}", ignore_errors=True)
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for point in sorted((p for p in points if p.startswith(str(tmp) + "/")),
                            reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _pod(ep: Endpoint, logdir: Path) -> tuple[str, pb.PodSandboxConfig]:
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"corral-test-{uuid.uuid4().hex[:6]}",
                                       namespace="default", uid=uuid.uuid4().hex),
        hostname="parity", log_directory=str(logdir), linux=pb.LinuxPodSandboxConfig())
    sid = ep.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config)).pod_sandbox_id
    return sid, config


def _ctr(ep: Endpoint, sid: str, pod: pb.PodSandboxConfig, name: str, cmd: list[str],
         stdin: bool = False) -> str:
    cid = ep.rt.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=pod, config=pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=ep.image),
            command=cmd, log_path=f"{name}.log", linux=pb.LinuxContainerConfig(),
            stdin=stdin))
    ).container_id
    ep.rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    return cid


def _scenario(ep: Endpoint, logdir: Path) -> dict:
    """One pod as kubelet runs it; what kubelet can observe, runtime-neutral."""
    out: dict = {}
    sid, pod = _pod(ep, logdir)
    st = ep.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
    out["pod_state"] = st.state
    out["pod_has_ip"] = bool(st.network.ip)
    main = _ctr(ep, sid, pod, "main", ["sleep", "300"])
    r = ep.rt.ExecSync(pb.ExecSyncRequest(container_id=main, timeout=10, cmd=[
        "sh", "-c", "echo out; echo err >&2; hostname; exit 3"]))
    out["exec"] = (r.stdout, r.stderr, r.exit_code)
    short = _ctr(ep, sid, pod, "short", ["sh", "-c", "echo one; echo two >&2; exit 5"])

    def exited():
        s = ep.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=short)).status
        return s if s.state == pb.CONTAINER_EXITED else None

    s = _wait(exited, what=f"{ep.name}: container exit")
    out["exit"] = (s.exit_code, s.reason, s.log_path == str(logdir / "short.log"))
    lines = (logdir / "short.log").read_text().splitlines()
    out["log"] = sorted(tuple(line.split(" ", 3)[1:]) for line in lines)
    listed = ep.rt.ListContainers(pb.ListContainersRequest(
        filter=pb.ContainerFilter(pod_sandbox_id=sid))).containers
    out["listed"] = sorted((c.metadata.name, c.state) for c in listed)
    for _ in range(2):
        ep.rt.StopContainer(pb.StopContainerRequest(container_id=main, timeout=0))
    out["stopped"] = ep.rt.ContainerStatus(pb.ContainerStatusRequest(
        container_id=main)).status.state
    for _ in range(2):
        ep.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=main))
    for _ in range(2):
        ep.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    out["pod_after_stop"] = ep.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(
        pod_sandbox_id=sid)).status.state
    for _ in range(2):
        ep.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    out["pod_gone"] = sid not in {p.id for p in ep.rt.ListPodSandbox(
        pb.ListPodSandboxRequest()).items}
    return out


def test_pod_scenario_same_on_corral_and_containerd(endpoints, tmp_path):
    results = {}
    for name, ep in endpoints.items():
        (tmp_path / name).mkdir()
        results[name] = _scenario(ep, tmp_path / name)
    assert results["corral"] == results["containerd"]
    assert results["corral"]["exec"] == (b"out\nparity\n", b"err\n", 3)
    assert results["corral"]["exit"] == (5, "Error", True)


def _code(call, request) -> str:
    try:
        call(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code().name
    return "OK"


def test_error_codes_same_as_containerd(endpoints, tmp_path):
    missing = "ab" * 32
    cases = {
        "PodSandboxStatus(unknown)": lambda ep: _code(
            ep.rt.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id=missing)),
        "ContainerStatus(unknown)": lambda ep: _code(
            ep.rt.ContainerStatus, pb.ContainerStatusRequest(container_id=missing)),
        "RemovePodSandbox(unknown)": lambda ep: _code(
            ep.rt.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=missing)),
        "RemoveContainer(unknown)": lambda ep: _code(
            ep.rt.RemoveContainer, pb.RemoveContainerRequest(container_id=missing)),
        "ExecSync(unknown)": lambda ep: _code(
            ep.rt.ExecSync, pb.ExecSyncRequest(container_id=missing, cmd=["true"])),
        "StartContainer(unknown)": lambda ep: _code(
            ep.rt.StartContainer, pb.StartContainerRequest(container_id=missing)),
        "StopPodSandbox(unknown)": lambda ep: _code(
            ep.rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=missing)),
        "StopContainer(unknown)": lambda ep: _code(
            ep.rt.StopContainer, pb.StopContainerRequest(container_id=missing)),
        "CreateContainer(unknown pod)": lambda ep: _code(
            ep.rt.CreateContainer, pb.CreateContainerRequest(
                pod_sandbox_id=missing, config=pb.ContainerConfig(
                    metadata=pb.ContainerMetadata(name="x"),
                    image=pb.ImageSpec(image=ep.image)))),
        "ImageStatus(absent)": lambda ep: _code(
            ep.im.ImageStatus, pb.ImageStatusRequest(
                image=pb.ImageSpec(image="corral-test-absent:1"))),
        "RemoveImage(absent)": lambda ep: _code(
            ep.im.RemoveImage, pb.RemoveImageRequest(
                image=pb.ImageSpec(image="corral-test-absent:1"))),
    }
    got = {name: {case: fn(ep) for case, fn in cases.items()}
           for name, ep in endpoints.items()}
    differing = {case: (got["corral"][case], got["containerd"][case]) for case in cases
                 if got["corral"][case] != got["containerd"][case]}
    assert differing == INTENDED_DIFFERENCES, f"corral vs containerd: {differing}"


#: where corral answers differently on purpose: (corral, containerd 1.6)
INTENDED_DIFFERENCES = {
    # the CRI says StopPodSandbox "must not return an error if all relevant resources
    # have already been reclaimed", and issue 9 asks for it; containerd 1.6 says
    # NotFound (kubelet tolerates both)
    "StopPodSandbox(unknown)": ("OK", "NOT_FOUND"),
}


def _ws_channels(url: str, send: list[bytes], protocol: str = "v4.channel.k8s.io") -> dict:
    websocket = pytest.importorskip("websocket", reason="needs websocket-client")
    ws = websocket.create_connection(url.replace("http://", "ws://"),
                                     subprotocols=[protocol], timeout=20)
    for message in send:
        ws.send_binary(message)
    out: dict[int, bytes] = {}
    while True:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketConnectionClosedException:
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        if data:
            out[data[0]] = out.get(data[0], b"") + data[1:]
    return {"protocol": ws.getsubprotocol(), **out}


def test_exec_streams_same_as_containerd(endpoints, tmp_path):
    """The streaming servers of both, driven over WebSocket (v4.channel.k8s.io) as
    kubelet's proxy does: same channels, same metav1.Status on the error channel."""
    results = {}
    for name, ep in endpoints.items():
        (tmp_path / name).mkdir()
        sid, pod = _pod(ep, tmp_path / name)
        cid = _ctr(ep, sid, pod, "main", ["sleep", "300"])
        url = ep.rt.Exec(pb.ExecRequest(container_id=cid, stdin=True, stdout=True,
                                        stderr=True, cmd=["sh", "-c", ("read l; echo got:$l; "
                                                          "echo e >&2; exit 2")])).url
        failed = _ws_channels(url, [b"\x00hi\n"])
        url = ep.rt.Exec(pb.ExecRequest(container_id=cid, stdout=True, stderr=True,
                                        cmd=["echo", "fine"])).url
        fine = _ws_channels(url, [])
        failed[3] = json.loads(failed[3])
        fine[3] = json.loads(fine[3])
        results[name] = (failed, fine)
        ep.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        ep.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert results["corral"] == results["containerd"]
    failed, fine = results["corral"]
    assert (failed[1], failed[2], failed[3]["reason"]) == (b"got:hi\n", b"e\n",
                                                           "NonZeroExitCode")
    assert (fine[1], fine[3]["status"]) == (b"fine\n", "Success")


def test_attach_and_port_forward_streams_same_as_containerd(endpoints, tmp_path):
    results = {}
    for name, ep in endpoints.items():
        (tmp_path / name).mkdir()
        sid, pod = _pod(ep, tmp_path / name)
        talker = _ctr(ep, sid, pod, "talker", ["sh", "-c", "read x; echo heard:$x; sleep 1"],
                      stdin=True)
        url = ep.rt.Attach(pb.AttachRequest(container_id=talker, stdin=True, stdout=True,
                                            stderr=True)).url
        attached = _ws_channels(url, [b"\x00ping\n"])
        attached.pop(3, None)  # the end of an attach: no status in either
        web = _ctr(ep, sid, pod, "web", ["sh", "-c", ("mkdir -p /w && echo fw > /w/i.html "
                                                     "&& exec httpd -f -p 127.0.0.1:8082 -h /w")])
        _wait(lambda ep=ep, web=web: ep.rt.ExecSync(pb.ExecSyncRequest(
            container_id=web, cmd=["sh", "-c", "netstat -ltn | grep -q :8082"],
            timeout=5)).exit_code == 0, what="httpd listening")
        url = ep.rt.PortForward(pb.PortForwardRequest(pod_sandbox_id=sid, port=[8082])).url
        forwarded = _ws_channels(url + "?port=8082",
                                 [b"\x00GET /i.html HTTP/1.0\r\nHost: x\r\n\r\n"])
        body = forwarded.pop(0)
        results[name] = (attached, forwarded, body[:2], body.split(b"\r\n\r\n")[-1])
        ep.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        ep.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert results["corral"] == results["containerd"]
    attached, forwarded, head, body = results["corral"]
    assert attached[1] == b"heard:ping\n"
    # the port announced on the data channel (in `head`) and the error channel
    assert head == (8082).to_bytes(2, "little") and forwarded[1] == head
    assert body == b"fw\n"


def test_image_status_same_as_containerd(endpoints):
    got = {}
    for name, ep in endpoints.items():
        image = ep.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(
            image="busybox"))).image
        pause = ep.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(
            image="localhost/corral/pause:catatonit"))).image
        got[name] = {"id": image.id, "tags": sorted(image.repo_tags),
                     "digests": sorted(image.repo_digests), "size": image.size > 0,
                     "pause_pinned": pause.pinned, "pause_id": pause.id,
                     "uid": (image.HasField("uid"), image.uid.value, image.username)}
    # on purpose: repo digests of every image with a manifest (as CRI-O and podman on
    # containers/storage report them; containerd only for pulled names), and the pause
    # image pinned (containerd does so from 1.7)
    digests = got["corral"].pop("digests")
    assert len(digests) == 1 and digests[0].startswith("docker.io/library/busybox@sha256:")
    assert got["containerd"].pop("digests") == []
    assert (got["corral"].pop("pause_pinned"), got["containerd"].pop("pause_pinned")) == (
        True, False)
    assert got["corral"] == got["containerd"]


def test_spdy_streams_same_as_containerd(endpoints, tmp_path):
    """SPDY/3.1, what crictl and kubelet's proxy speak by default: exec (stdin, exit
    status), and port-forward, on both streaming servers."""
    from tests.support import spdy_client

    results = {}
    for name in ("containerd", "corral"):  # the reference first: it checks the client
        ep = endpoints[name]
        (tmp_path / name).mkdir()
        sid, pod = _pod(ep, tmp_path / name)
        cid = _ctr(ep, sid, pod, "main", ["sh", "-c", ("mkdir -p /w && echo sp > /w/i.html "
                                                      "&& exec httpd -f -p 127.0.0.1:8083 -h /w")])
        url = ep.rt.Exec(pb.ExecRequest(container_id=cid, stdin=True, stdout=True,
                                        stderr=True, cmd=["sh", "-c", ("read l; echo got:$l; "
                                                          "echo e >&2; exit 2")])).url
        failed = spdy_client.remotecommand(url, stdin=b"hi\n")
        failed["error"] = json.loads(failed["error"])
        url = ep.rt.Exec(pb.ExecRequest(container_id=cid, stdout=True, stderr=True,
                                        cmd=["echo", "fine"])).url
        fine = spdy_client.remotecommand(url)
        _wait(lambda ep=ep, cid=cid: ep.rt.ExecSync(pb.ExecSyncRequest(
            container_id=cid, cmd=["sh", "-c", "netstat -ltn | grep -q :8083"],
            timeout=5)).exit_code == 0, what="httpd listening")
        url = ep.rt.PortForward(pb.PortForwardRequest(pod_sandbox_id=sid, port=[8083])).url
        forwarded = spdy_client.portforward(url, 8083,
                                            b"GET /i.html HTTP/1.0\r\nHost: x\r\n\r\n")
        forwarded["data"] = forwarded["data"].split(b"\r\n\r\n")[-1]
        results[name] = (failed, fine, forwarded)
        ep.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        ep.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    failed, fine, forwarded = results["containerd"]
    assert (failed["stdout"], failed["stderr"]) == (b"got:hi\n", b"e\n")
    assert failed["error"]["reason"] == "NonZeroExitCode"
    assert fine["stdout"] == b"fine\n" and forwarded["data"] == b"sp\n"
    assert results["corral"] == results["containerd"]


def test_exec_sync_of_a_missing_command_same_as_containerd(endpoints, tmp_path):
    got = {}
    for name, ep in endpoints.items():
        (tmp_path / name).mkdir()
        sid, pod = _pod(ep, tmp_path / name)
        cid = _ctr(ep, sid, pod, "main", ["sleep", "300"])
        try:
            r = ep.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["/no/such"],
                                                  timeout=10))
            got[name] = ("exit", r.exit_code)
        except grpc.RpcError as exc:
            got[name] = ("error", exc.code().name)
        ep.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert got["corral"] == got["containerd"]


def test_container_edge_cases_same_as_containerd(endpoints, tmp_path):
    """What kubelet sees around one pod's edges: an OOM kill, a missing image, a second
    start, exec and log reopen on a stopped container."""
    got = {}
    for name, ep in endpoints.items():
        (tmp_path / name).mkdir()
        sid, pod = _pod(ep, tmp_path / name)
        out = {}
        limit = 16 << 20
        hog = ep.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=pod, config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="hog"), image=pb.ImageSpec(image=ep.image),
                command=["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
                linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                    memory_limit_in_bytes=limit, memory_swap_limit_in_bytes=limit))))
        ).container_id
        ep.rt.StartContainer(pb.StartContainerRequest(container_id=hog))

        def exited(ep=ep, hog=hog):
            s = ep.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=hog)).status
            return s if s.state == pb.CONTAINER_EXITED else None

        s = _wait(exited, what=f"{name}: OOM")
        out["oom"] = (s.exit_code, s.reason)
        out["start again"] = _code(ep.rt.StartContainer,
                                   pb.StartContainerRequest(container_id=hog))
        out["exec stopped"] = _code(ep.rt.ExecSync, pb.ExecSyncRequest(
            container_id=hog, cmd=["true"], timeout=5))
        out["reopen stopped"] = _code(ep.rt.ReopenContainerLog,
                                      pb.ReopenContainerLogRequest(container_id=hog))
        out["missing image"] = _code(ep.rt.CreateContainer, pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=pod, config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="noimg"),
                image=pb.ImageSpec(image="corral-test-absent:1"))))
        ep.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        ep.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        got[name] = out
    # on purpose: a container in the wrong state is FAILED_PRECONDITION in corral (the
    # gRPC code for it); containerd 1.6 answers UNKNOWN. kubelet treats both as errors.
    for case in ("start again", "exec stopped", "reopen stopped"):
        assert (got["corral"].pop(case), got["containerd"].pop(case)) == (
            "FAILED_PRECONDITION", "UNKNOWN"), case
    # containerd 1.6 learns of the OOM kill from its shim's cgroup v1 eventfd event, which
    # can arrive after the exit is reported: on a busy machine it then says "Error"
    # (seen once in CI, load ~4). Corral's answer is still checked exactly, below.
    code, reason = got["containerd"]["oom"]
    assert code == 137 and reason in ("OOMKilled", "Error"), got["containerd"]["oom"]
    got["containerd"]["oom"] = (137, "OOMKilled")
    assert got["corral"] == got["containerd"]
    assert got["corral"] == {"oom": (137, "OOMKilled"), "missing image": "NOT_FOUND"}
