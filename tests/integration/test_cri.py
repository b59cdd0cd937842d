"""The CRI server (`corral cri serve`) driven as kubelet drives it: through the gRPC
client generated from cri-api's api.proto, over the unix socket.

One server per module on its own store root (busybox image made locally, the pause
image built from catatonit on first use); pods on the session's test network
(`corral-test-def`, tests/conftest.py). Teardown stops and removes every pod, stops
the server, kills any conmon left for the root and removes the root.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from tests.support.network import leases, veths_on

grpc = pytest.importorskip("grpc", reason="needs grpcio (scripts/setup)")
try:
    from corral.cri._gen import api_pb2 as pb
    from corral.cri._gen import api_pb2_grpc as pb_grpc
except ImportError:  # pragma: no cover - scripts/setup generates them
    pytest.skip("CRI stubs not generated (run scripts/gen-cri)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers, CNI)"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="needs conmon"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/catatonit"),
                       reason="needs catatonit (the pause process)"),
]


def _conmons(root: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"conmon") and any(str(root).encode() in a for a in cmd):
            pids.append(int(entry))
    return pids


#: where the module's server puts pods with resources but no cgroup_parent (a test name,
#: removed with the server)
POD_CGROUP_ROOT = f"/corral-test-pods-{uuid.uuid4().hex[:8]}"


def _remove_cgroup_tree(cgroup: str) -> None:
    """`cgroup` and what is under it, in every mounted hierarchy (deepest first)."""
    with open("/proc/self/mountinfo") as f:
        points = {line.split()[4] for line in f if " - cgroup" in line}
    for point in points:
        top = Path(point + cgroup)
        if top.is_dir():
            for directory in sorted((d for d in top.rglob("*") if d.is_dir()),
                                    key=lambda d: len(d.parts), reverse=True):
                directory.rmdir()
            top.rmdir()


class Server:
    """A `corral cri serve` process on `root`; `start()`/`stop()` may be repeated."""

    def __init__(self, root: Path, sock: Path, *args: str) -> None:
        self.root, self.sock, self.args = root, sock, args
        self.proc: subprocess.Popen | None = None
        self.channel = None
        self.runtime: pb_grpc.RuntimeServiceStub | None = None
        self.images: pb_grpc.ImageServiceStub | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [CORRAL, "--root", str(self.root), "cri", "serve", "--listen",
             f"unix://{self.sock}", *self.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            self.proc.kill()
            raise AssertionError(f"cri serve did not start: {line}{self.proc.stderr.read()}")
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def cri():
    root = Path(tempfile.mkdtemp(prefix="corral-test-cri-"))
    sock_dir = Path(tempfile.mkdtemp(prefix="corral-test-cri-sock-"))
    server = Server(root, sock_dir / "cri.sock", "--pod-cgroup-root", POD_CGROUP_ROOT)
    try:
        subprocess.run([CORRAL, "--root", str(root), "image", "busybox"], check=True,
                       capture_output=True, timeout=120)
        server.start()
        yield server
    finally:
        if server.runtime is not None:
            try:
                for pod in server.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items:
                    server.runtime.StopPodSandbox(
                        pb.StopPodSandboxRequest(pod_sandbox_id=pod.id))
                    server.runtime.RemovePodSandbox(
                        pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id))
            except grpc.RpcError:
                pass
        server.stop()
        subprocess.run([CORRAL, "--root", str(root), "rm", "-af"], check=False, capture_output=True,
                       timeout=120)
        for pid in _conmons(root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for point in sorted((p for p in points if p.startswith(str(root) + "/")),
                            reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(sock_dir, ignore_errors=True)
        _remove_cgroup_tree(POD_CGROUP_ROOT)


@pytest.fixture
def logdir():
    path = Path(tempfile.mkdtemp(prefix="corral-test-cri-logs-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _pod_config(name: str, logdir: Path | None = None, **kw) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="default",
                                       uid=uuid.uuid4().hex, attempt=0),
        hostname=name, log_directory=str(logdir) if logdir else "",
        labels={"app": name}, annotations={"note": "test"}, **kw)


class Pod:
    """One pod through the API; `remove()` is safe to call twice."""

    def __init__(self, cri: Server, name: str, logdir: Path | None = None, *,
                 runtime_handler: str = "", **kw) -> None:
        self.cri = cri
        self.config = _pod_config(name, logdir, **kw)
        self.id = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(
            config=self.config, runtime_handler=runtime_handler)).pod_sandbox_id

    def container(self, name: str, command: list[str], *, log_path: str = "",
                  start: bool = True, **kw) -> str:
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image="busybox"),
            command=command, log_path=log_path, labels={"ctr": name}, **kw)
        cid = self.cri.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=self.id, config=config, sandbox_config=self.config)).container_id
        if start:
            self.cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
        return cid

    def exec(self, cid: str, cmd: list[str], timeout: int = 10) -> pb.ExecSyncResponse:
        return self.cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd,
                                                            timeout=timeout))

    def remove(self) -> None:
        self.cri.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=self.id))
        self.cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=self.id))


@pytest.fixture
def pod(cri):
    made: list[Pod] = []

    def make(name: str | None = None, logdir: Path | None = None, **kw) -> Pod:
        p = Pod(cri, name or f"corral-test-{uuid.uuid4().hex[:6]}", logdir, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        try:
            p.remove()
        except grpc.RpcError:
            pass


def _until(pred, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached")


def _code(call, *args) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value.code(), info.value.details()


# -- runtime ---------------------------------------------------------------------------------
def test_version_status_runtime_config(cri):
    v = cri.runtime.Version(pb.VersionRequest())
    assert (v.runtime_name, v.runtime_api_version) == ("corral", "v1") and v.runtime_version
    conditions = {c.type: c.status for c in
                  cri.runtime.Status(pb.StatusRequest()).status.conditions}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}
    config = cri.runtime.RuntimeConfig(pb.RuntimeConfigRequest())
    assert config.linux.cgroup_driver == pb.CGROUPFS


# -- pods --------------------------------------------------------------------------------------
def test_pod_two_containers_share_localhost_and_ipc_uts(cri, pod):
    p = pod()
    status = cri.runtime.PodSandboxStatus(
        pb.PodSandboxStatusRequest(pod_sandbox_id=p.id)).status
    assert status.state == pb.SANDBOX_READY
    assert ipaddress.ip_address(status.network.ip).version == 4
    assert status.metadata.name == p.config.metadata.name and status.labels["app"]
    serve = ("mkdir -p /www && echo hello-pod > /www/index.html"
             " && exec httpd -f -p 127.0.0.1:8080 -h /www")
    web = p.container("web", ["sh", "-c", serve])
    client = p.container("client", ["sleep", "300"])
    _until(lambda: p.exec(web, ["sh", "-c", "netstat -ltn | grep -q :8080"]).exit_code == 0)
    r = p.exec(client, ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])
    assert (r.exit_code, r.stdout) == (0, b"hello-pod\n")
    # the pod's hostname (UTS) and IPC namespace are shared too
    assert p.exec(client, ["hostname"]).stdout.decode().strip() == p.config.hostname
    ipc = [p.exec(c, ["readlink", "/proc/self/ns/ipc"]).stdout for c in (web, client)]
    assert ipc[0] == ipc[1] and ipc[0].startswith(b"ipc:")
    # and the pod's /dev/shm (POSIX shared memory)
    assert p.exec(web, ["sh", "-c", "echo shared > /dev/shm/note"]).exit_code == 0
    assert p.exec(client, ["cat", "/dev/shm/note"]).stdout == b"shared\n"
    # the pod IP is the containers' eth0 address
    assert f"inet {status.network.ip}/" in p.exec(client, ["ip", "addr", "show", "eth0"]
                                                  ).stdout.decode()
    listed = cri.runtime.ListContainers(pb.ListContainersRequest(
        filter=pb.ContainerFilter(pod_sandbox_id=p.id))).containers
    assert sorted(c.metadata.name for c in listed) == ["client", "web"]
    assert all(c.state == pb.CONTAINER_RUNNING for c in listed)


def test_exec_sync_output_exit_codes_and_timeout(cri, pod):
    p = pod()
    cid = p.container("main", ["sleep", "300"])
    r = p.exec(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 3)
    assert p.exec(cid, ["true"]).exit_code == 0
    # a command that fails is an exit code; one that cannot start an error (containerd's)
    r = p.exec(cid, ["cat", "/missing"])
    assert r.exit_code == 1 and b"No such file" in r.stderr
    code, msg = _code(p.exec, cid, ["/no/such"])
    assert code == grpc.StatusCode.UNKNOWN and "/no/such" in msg
    started = time.monotonic()
    code, _ = _code(p.exec, cid, ["sleep", "30"], 1)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started < 10
    # the timed-out command was killed (a zombie at most: `sleep 300` as PID 1 reaps none)
    assert b"sleep 30\n" not in p.exec(cid, ["ps", "-o", "args"]).stdout


def test_logs_in_cri_format_and_container_status(cri, pod, logdir):
    p = pod(logdir=logdir)
    cid = p.container("logger", ["sh", "-c", "echo line1; echo err1 >&2; printf partial"],
                      log_path="logger/0.log")
    status = _until(lambda: (s := cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
        container_id=cid)).status).state == pb.CONTAINER_EXITED and s)
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert status.log_path == str(logdir / "logger/0.log")
    assert status.started_at > 0 and status.finished_at >= status.started_at
    assert status.metadata.name == "logger" and status.labels == {"ctr": "logger"}
    lines = (logdir / "logger" / "0.log").read_text().splitlines()
    parsed = [line.split(" ", 3) for line in lines]
    assert [(s, t, m) for _, s, t, m in parsed] == [
        ("stdout", "F", "line1"), ("stderr", "F", "err1"), ("stdout", "P", "partial")] or \
        sorted((s, t, m) for _, s, t, m in parsed) == sorted(
            [("stdout", "F", "line1"), ("stderr", "F", "err1"), ("stdout", "P", "partial")])
    for ts, *_ in parsed:  # RFC 3339 with nanoseconds
        assert len(ts) >= 20 and ts[4] == "-" and ts[10] == "T", ts
    failing = p.container("failing", ["sh", "-c", "exit 7"])
    status = _until(lambda: (s := cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
        container_id=failing)).status).state == pb.CONTAINER_EXITED and s)
    assert (status.exit_code, status.reason) == (7, "Error")


def test_stop_and_remove_are_idempotent(cri, pod):
    p = pod()
    cid = p.container("main", ["sleep", "300"])
    rt = cri.runtime
    for _ in range(2):
        rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
    state = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status.state
    assert state == pb.CONTAINER_EXITED
    for _ in range(2):
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    assert _code(rt.ContainerStatus, pb.ContainerStatusRequest(container_id=cid))[0] == \
        grpc.StatusCode.NOT_FOUND
    for _ in range(2):
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.id))
    status = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=p.id)).status
    assert status.state == pb.SANDBOX_NOTREADY and status.network.ip == ""
    shm_dir = json.loads((cri.root / "cri" / "sandboxes" / f"{p.id}.json").read_text())["shm"]
    assert shm_dir and not os.path.ismount(shm_dir)  # the pod's shm went with the stop
    for _ in range(2):
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id))
    assert p.id not in [s.id for s in rt.ListPodSandbox(pb.ListPodSandboxRequest()).items]
    out = subprocess.run([CORRAL, "--root", str(cri.root), "ps", "-aq", "--no-trunc"],
                         capture_output=True, text=True, check=True).stdout
    assert p.id not in out and cid not in out
    with open("/proc/self/mountinfo") as f:  # the pod's shm tmpfs is gone too
        assert not [line for line in f if p.id in line or cid in line or shm_dir in line]
    assert not os.path.exists(shm_dir)


def test_list_pod_sandbox_filters(cri, pod):
    a, b = pod(), pod()
    rt = cri.runtime
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=b.id))

    def ids(**kw) -> set[str]:
        return {s.id for s in rt.ListPodSandbox(pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(**kw))).items} & {a.id, b.id}

    assert ids() == {a.id, b.id}
    assert ids(id=a.id[:12]) == {a.id}
    assert ids(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)) == {a.id}
    assert ids(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)) == {b.id}
    assert ids(label_selector={"app": b.config.metadata.name}) == {b.id}


def test_bad_requests_get_proper_codes(cri, pod):
    rt = cri.runtime
    code, msg = _code(rt.RunPodSandbox, pb.RunPodSandboxRequest(config=pb.PodSandboxConfig()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in msg
    code, msg = _code(rt.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id="ab" * 32))
    assert code == grpc.StatusCode.NOT_FOUND and "not found" in msg
    code, _ = _code(rt.ContainerStatus, pb.ContainerStatusRequest(container_id="cd" * 32))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(rt.ExecSync, pb.ExecSyncRequest(container_id="cd" * 32, cmd=["true"]))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(rt.CreateContainer, pb.CreateContainerRequest(
        pod_sandbox_id="ef" * 32, config=pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="x"), image=pb.ImageSpec(image="busybox"))))
    assert code == grpc.StatusCode.NOT_FOUND
    p = pod()
    bad_user = pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        run_as_group=pb.Int64Value(value=10)))
    code, msg = _code(lambda: p.container("bad", ["true"], start=False, linux=bad_user))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "run_as_group" in msg
    code, msg = _code(lambda: p.container("", ["true"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "metadata.name" in msg
    code, _ = _code(lambda: cri.runtime.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=p.id, config=pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="noimage"),
            image=pb.ImageSpec(image="corral-test-no-such-image")))))
    assert code == grpc.StatusCode.NOT_FOUND
    # names are unique per pod attempt / container attempt
    code, msg = _code(rt.RunPodSandbox, pb.RunPodSandboxRequest(config=p.config))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "in use" in msg
    first = p.container("twice", ["sleep", "300"], start=False)
    code, _ = _code(lambda: p.container("twice", ["sleep", "300"], start=False))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=first))
    code, _ = _code(rt.StartContainer, pb.StartContainerRequest(container_id=first))
    assert code == grpc.StatusCode.NOT_FOUND
    # nothing was left behind by the failed creates
    listed = rt.ListContainers(pb.ListContainersRequest(
        filter=pb.ContainerFilter(pod_sandbox_id=p.id))).containers
    assert list(listed) == []


def test_security_context_user_and_readonly_rootfs(cri, pod):
    p = pod()
    linux = pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        run_as_user=pb.Int64Value(value=1000), run_as_group=pb.Int64Value(value=1001),
        supplemental_groups=[2000], readonly_rootfs=True, no_new_privs=True))
    cid = p.container("sec", ["sleep", "300"], linux=linux)
    r = p.exec(cid, ["id"])
    assert r.stdout.decode().startswith("uid=1000 gid=1001") and "2000" in r.stdout.decode()
    user = cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
        container_id=cid)).status.user.linux
    assert (user.uid, user.gid, list(user.supplemental_groups)) == (1000, 1001, [2000])
    assert p.exec(cid, ["touch", "/x"]).exit_code != 0
    status = p.exec(cid, ["grep", "NoNewPrivs", "/proc/self/status"]).stdout.decode()
    assert status.split()[-1] == "1"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_server_restart_keeps_pods_and_containers(cri, pod, how):
    p = pod()
    cid = p.container("main", ["sleep", "300"])
    short = p.container("short", ["sh", "-c", "sleep 1; exit 4"])
    if how == "SIGKILL":
        cri.proc.kill()  # no graceful shutdown
        cri.proc.wait()
    cri.stop()
    time.sleep(1.5)  # `short` exits while no server runs
    cri.start()
    rt = cri.runtime
    response = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=p.id))
    status = response.status
    assert status.state == pb.SANDBOX_READY and status.network.ip
    assert sorted(s.id for s in response.containers_statuses) == sorted([cid, short])
    assert response.timestamp
    c = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
    assert c.state == pb.CONTAINER_RUNNING
    assert p.exec(cid, ["echo", "still"]).stdout == b"still\n"
    done = _until(lambda: (s := rt.ContainerStatus(pb.ContainerStatusRequest(
        container_id=short)).status).state == pb.CONTAINER_EXITED and s)
    assert (done.exit_code, done.reason) == (4, "Error")


# -- images ------------------------------------------------------------------------------------
def test_image_service_list_status_remove_fsinfo(cri):
    im = cri.images
    names = {t for i in im.ListImages(pb.ListImagesRequest()).images for t in i.repo_tags}
    assert "docker.io/library/busybox:latest" in names
    listed = im.ListImages(pb.ListImagesRequest()).images
    assert not any(i.pinned for i in listed if "docker.io/library/busybox:latest"
                   in i.repo_tags)
    assert all(i.pinned for i in listed if "localhost/corral/pause:catatonit" in i.repo_tags)
    st = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="busybox"),
                                              verbose=True))
    assert st.image.id.startswith("sha256:") and st.image.size > 0 and "imageSpec" in \
        st.info["info"]
    missing = im.ImageStatus(pb.ImageStatusRequest(
        image=pb.ImageSpec(image="corral-test-absent:1")))
    assert not missing.HasField("image")
    im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image="corral-test-absent:1")))
    fs = im.ImageFsInfo(pb.ImageFsInfoRequest())
    assert fs.image_filesystems[0].used_bytes.value > 0
    assert fs.image_filesystems[0].fs_id.mountpoint == str(cri.root)


# -- CNI ---------------------------------------------------------------------------------------
_veths_on, _leases = veths_on, leases


@pytest.fixture
def tiny_net_server(cri):
    """A second server on the same store whose pods go on a /30 network: one address
    for pods, so a second pod's CNI ADD fails (host-local: no addresses left)."""
    tag = uuid.uuid4().hex
    name, bridge = f"corral-test-{tag[:8]}", f"corral-test-{tag[8:11]}"
    made = None
    for third in range(160, 200):
        r = subprocess.run([CORRAL, "--root", str(cri.root), "network", "create",
                            "--interface-name", bridge, "--subnet", f"10.99.{third}.0/30",
                            name], check=False, capture_output=True, text=True)
        if r.returncode == 0:
            made = name
            break
    if made is None:
        pytest.skip(f"no free /30 subnet for a test network: {r.stderr}")
    server = Server(cri.root, cri.sock.parent / "tiny.sock", "--network", name)
    server.network, server.bridge = name, bridge
    try:
        server.start()
        yield server
    finally:
        try:
            for pod in server.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items:
                if pod.metadata.name.startswith("corral-test-tiny"):
                    server.runtime.StopPodSandbox(
                        pb.StopPodSandboxRequest(pod_sandbox_id=pod.id))
                    server.runtime.RemovePodSandbox(
                        pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id))
        except (grpc.RpcError, AttributeError):
            pass
        server.stop()
        subprocess.run([CORRAL, "--root", str(cri.root), "network", "rm", "-f", name],
                       check=False, capture_output=True)
        from corral.network.networks import remove_bridge, remove_leases

        remove_bridge(bridge)
        remove_leases(name)


def test_pod_whose_cni_setup_fails_leaves_nothing_behind(tiny_net_server):
    srv = tiny_net_server
    rt = srv.runtime
    first = Pod(srv, "corral-test-tiny1")
    ip = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(
        pod_sandbox_id=first.id)).status.network.ip
    assert ip.endswith(".2")
    pods = {s.id for s in rt.ListPodSandbox(pb.ListPodSandboxRequest()).items}
    ctrs = subprocess.run([CORRAL, "--root", str(srv.root), "ps", "-aq", "--no-trunc"],
                          capture_output=True, text=True, check=True).stdout.split()
    netns = sorted(os.listdir(srv.root / "engine" / "netns"))
    veths, leases = _veths_on(srv.bridge), _leases(srv.network)
    assert len(veths) == 1 and len(leases) == 1
    code, msg = _code(lambda: Pod(srv, "corral-test-tiny2"))
    # the code is the engine's category of the CNI error (its message decides), the
    # message the plugin's
    assert code != grpc.StatusCode.OK and msg
    assert {s.id for s in rt.ListPodSandbox(pb.ListPodSandboxRequest()).items} == pods
    assert subprocess.run([CORRAL, "--root", str(srv.root), "ps", "-aq", "--no-trunc"],
                          capture_output=True, text=True,
                          check=True).stdout.split() == ctrs
    assert sorted(os.listdir(srv.root / "engine" / "netns")) == netns
    assert (_veths_on(srv.bridge), _leases(srv.network)) == (veths, leases)
    first.remove()
    assert _veths_on(srv.bridge, gone=True) == [] and _leases(srv.network) == []


def test_container_oom_killed_is_reported(cri, pod):
    p = pod()
    limit = 16 << 20
    linux = pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
        memory_limit_in_bytes=limit, memory_swap_limit_in_bytes=limit))
    cid = p.container("hog", ["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
                      linux=linux)
    status = _until(lambda: (s := cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
        container_id=cid)).status).state == pb.CONTAINER_EXITED and s, timeout=20)
    assert status.reason == "OOMKilled" and status.exit_code == 137, status


def test_pull_image_with_auth_from_the_request(cri, tmp_path):
    from tests.support.registry_server import ServeProcess

    registry = ServeProcess(tmp_path / "registry", "--user", "corral:s3cret")
    try:
        ref = f"{registry.addr}/corral-test/bb:1"
        subprocess.run([CORRAL, "--root", str(cri.root), "push", "-q", "--creds",
                        "corral:s3cret", "busybox", f"docker://{ref}"], check=True,
                       capture_output=True, timeout=120)
        # pulled into a store of its own (the same content as the module's busybox:
        # RemoveImage there would untag that too)
        other = Server(tmp_path / "store", tmp_path / "pull.sock")
        other.start()
        im = other.images
        code, _ = _code(im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=ref)))
        assert code != grpc.StatusCode.OK
        pulled = im.PullImage(pb.PullImageRequest(
            image=pb.ImageSpec(image=ref),
            auth=pb.AuthConfig(username="corral", password="s3cret")))
        assert pulled.image_ref.startswith("sha256:")
        st = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).image
        assert st.id == pulled.image_ref and ref in st.repo_tags
        assert any(d.startswith(f"{registry.addr}/corral-test/bb@sha256:")
                   for d in st.repo_digests)
        im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
        after = im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)))
        assert not after.HasField("image")
    finally:
        if "other" in locals():
            other.stop()
        registry.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_get(url: str, timeout: float = 10.0) -> bytes:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_port_mapping_and_dns_config(cri, pod):
    port = _free_port()
    p = pod(port_mappings=[pb.PortMapping(container_port=8080, host_port=port,
                                          host_ip="127.0.0.1")],
            dns_config=pb.DNSConfig(servers=["10.96.0.10"], searches=["svc.cluster.local"],
                                    options=["ndots:5"]))
    serve = "mkdir -p /www && echo mapped > /www/index.html && exec httpd -f -p 8080 -h /www"
    cid = p.container("web", ["sh", "-c", serve])
    assert _http_get(f"http://127.0.0.1:{port}/") == b"mapped\n"
    resolv = p.exec(cid, ["cat", "/etc/resolv.conf"]).stdout.decode()
    assert "nameserver 10.96.0.10" in resolv and "svc.cluster.local" in resolv
    assert "ndots:5" in resolv


def test_host_network_pod(cri, pod):
    host_net = pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(network=pb.NODE)))
    p = pod(linux=host_net)
    cid = p.container("main", ["sleep", "300"])
    assert p.exec(cid, ["readlink", "/proc/self/ns/net"]).stdout.decode().strip() == \
        os.readlink("/proc/self/ns/net")
    assert p.exec(cid, ["hostname"]).stdout.decode().strip() == os.uname().nodename
    status = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=p.id))
    assert status.status.linux.namespaces.options.network == pb.NODE


def test_update_container_resources(cri, pod):
    p = pod()
    cid = p.container("main", ["sleep", "300"])
    cri.runtime.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(
            memory_limit_in_bytes=64 << 20, cpu_quota=20000, cpu_period=100000)))
    mem = p.exec(cid, ["sh", "-c", ("cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes")]).stdout
    assert mem == b"%d\n" % (64 << 20)
    cpu = p.exec(cid, ["sh", "-c", ("cat /sys/fs/cgroup/cpu.max 2>/dev/null || "
                               "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us")]).stdout
    assert cpu in (b"20000 100000\n", b"20000\n")
    res = cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
        container_id=cid)).status.resources.linux
    assert (res.memory_limit_in_bytes, res.cpu_quota, res.cpu_period) == (64 << 20, 20000,
                                                                          100000)
    code, _ = _code(cri.runtime.UpdateContainerResources,
                    pb.UpdateContainerResourcesRequest(container_id="ab" * 32))
    assert code == grpc.StatusCode.NOT_FOUND


def test_container_and_pod_stats(cri, pod):
    p = pod()
    busy = p.container("busy", ["sh", "-c", ("head -c 20000000 /dev/zero | tr '\\0' a > "
                                            "/dev/shm/blob; while :; do :; done")])
    idle = p.container("idle", ["sleep", "300"])
    rt = cri.runtime

    def loaded():
        s = rt.ContainerStats(pb.ContainerStatsRequest(container_id=busy)).stats
        return s.memory.usage_bytes.value > 10_000_000 and s
    s = _until(loaded, timeout=20)
    assert s.attributes.id == busy and s.attributes.metadata.name == "busy"
    first = s.cpu.usage_core_nano_seconds.value
    time.sleep(0.3)
    s = rt.ContainerStats(pb.ContainerStatsRequest(container_id=busy)).stats
    assert s.cpu.usage_core_nano_seconds.value > first and s.cpu.usage_nano_cores.value > 0
    assert s.memory.working_set_bytes.value > 0
    listed = rt.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(pod_sandbox_id=p.id))).stats
    assert {x.attributes.id for x in listed} == {busy, idle}
    pod_stats = rt.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=p.id)).stats
    assert pod_stats.attributes.id == p.id
    assert {x.attributes.id for x in pod_stats.linux.containers} == {busy, idle}
    assert pod_stats.linux.memory.usage_bytes.value >= s.memory.usage_bytes.value // 2
    assert pod_stats.linux.process.process_count.value >= 3  # pause, sh, sleep
    assert pod_stats.linux.network.default_interface.name == "eth0"
    assert pod_stats.linux.network.default_interface.rx_bytes.value >= 0
    ids = {x.attributes.id for x in rt.ListPodSandboxStats(
        pb.ListPodSandboxStatsRequest()).stats}
    assert p.id in ids
    code, _ = _code(rt.ContainerStats, pb.ContainerStatsRequest(container_id="ab" * 32))
    assert code == grpc.StatusCode.NOT_FOUND
    # the writable layer grows with what the container writes
    before = rt.ContainerStats(pb.ContainerStatsRequest(container_id=idle)).stats
    assert p.exec(idle, ["dd", "if=/dev/zero", "of=/blob", "bs=1M", "count=5"]).exit_code == 0
    after = rt.ContainerStats(pb.ContainerStatsRequest(container_id=idle)).stats
    grown = after.writable_layer.used_bytes.value - before.writable_layer.used_bytes.value
    assert grown >= 5 << 20 and after.writable_layer.inodes_used.value >= 1
    assert after.writable_layer.fs_id.mountpoint == str(cri.root)


# -- streaming ---------------------------------------------------------------------------------
def _ws(url: str, protocol: str = "v4.channel.k8s.io"):
    websocket = pytest.importorskip("websocket", reason="needs websocket-client")
    return websocket.create_connection(url.replace("http://", "ws://"),
                                       subprotocols=[protocol], timeout=10)


def _drain(ws) -> dict[int, bytes]:
    """Every message until the server closes: channel -> bytes."""
    import websocket

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
    return out


def test_exec_stream_websocket_v4(cri, pod):
    import json

    p = pod()
    cid = p.container("main", ["sleep", "300"])
    url = cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=[
        "sh", "-c", "read line; echo got:$line; echo oops >&2; exit 4"],
        stdin=True, stdout=True, stderr=True)).url
    assert url.startswith("http://127.0.0.1:")
    ws = _ws(url)
    assert ws.getsubprotocol() == "v4.channel.k8s.io"
    ws.send_binary(b"\x00hello\n")
    got = _drain(ws)
    assert got[1] == b"got:hello\n" and got[2] == b"oops\n"
    status = json.loads(got[3])
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"][0] == {"reason": "ExitCode", "message": "4"}
    # success, and the URL works only once
    url = cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=["echo", "ok"],
                                          stdout=True)).url
    got = _drain(_ws(url))
    assert got[1] == b"ok\n" and json.loads(got[3])["status"] == "Success"
    import websocket

    with pytest.raises(websocket.WebSocketBadStatusException):
        _ws(url)
    code, _ = _code(cri.runtime.Exec, pb.ExecRequest(container_id=cid, cmd=["true"],
                                                     tty=True, stderr=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_exec_stream_tty(cri, pod):
    p = pod()
    cid = p.container("main", ["sleep", "300"])
    url = cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=["sh", "-c", "tty; stty size"],
                                          tty=True, stdout=True, stdin=True)).url
    ws = _ws(url)
    ws.send_binary(b'\x04{"Width": 91, "Height": 17}')
    out = _drain(ws)[1].decode()
    assert "/dev/pts/" in out


def test_attach_stream(cri, pod):
    p = pod()
    cid = p.container("talker", ["sh", "-c", "read x; echo heard:$x; sleep 1"], stdin=True)
    url = cri.runtime.Attach(pb.AttachRequest(container_id=cid, stdin=True, stdout=True,
                                              stderr=True)).url
    ws = _ws(url)
    ws.send_binary(b"\x00ping\n")
    assert _drain(ws).get(1) == b"heard:ping\n"


def test_port_forward_stream(cri, pod):
    import struct

    p = pod()
    serve = "mkdir -p /www && echo forwarded > /www/index.html && exec httpd -f -p 127.0.0.1:8081 -h /www"
    cid = p.container("web", ["sh", "-c", serve])
    _until(lambda: p.exec(cid, ["sh", "-c", "netstat -ltn | grep -q :8081"]).exit_code == 0)
    url = cri.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=p.id, port=[8081])).url
    ws = _ws(url + "?port=8081")
    heads = {}
    while len(heads) < 2:
        data = ws.recv()
        heads[data[0]] = data[1:]
    assert heads == {0: struct.pack("<H", 8081), 1: struct.pack("<H", 8081)}
    ws.send_binary(b"\x00GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    body = _drain(ws).get(0, b"")
    assert body.startswith(b"HTTP/1.") and body.endswith(b"forwarded\n")


def test_get_container_events(cri, pod):
    import threading

    stream = cri.runtime.GetContainerEvents(pb.GetEventsRequest())
    seen: list = []

    def collect():
        try:
            seen.extend(stream)
        except grpc.RpcError:
            pass

    t = threading.Thread(target=collect, daemon=True)
    t.start()
    time.sleep(0.3)  # subscribed
    try:
        p = pod()
        cid = p.container("short", ["sh", "-c", "sleep 0.5; exit 3"])

        def kinds():
            return [e.container_event_type for e in seen if e.container_id == cid]

        _until(lambda: pb.CONTAINER_STOPPED_EVENT in kinds(), timeout=15)
        cri.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
        _until(lambda: pb.CONTAINER_DELETED_EVENT in kinds())
        assert kinds() == [pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT,
                           pb.CONTAINER_STOPPED_EVENT, pb.CONTAINER_DELETED_EVENT]
        stopped = next(e for e in seen if e.container_id == cid and
                       e.container_event_type == pb.CONTAINER_STOPPED_EVENT)
        assert stopped.pod_sandbox_status.id == p.id
        assert [(s.id, s.exit_code) for s in stopped.containers_statuses] == [(cid, 3)]
        assert any(e.container_id == p.id and e.container_event_type ==
                   pb.CONTAINER_STARTED_EVENT for e in seen)
    finally:
        stream.cancel()
        t.join(5)


def test_reopen_container_log(cri, pod, logdir):
    p = pod(logdir=logdir)
    cid = p.container("ticker", ["sh", "-c", ("i=0; while :; do echo tick$i; i=$((i+1)); "
                                             "sleep 0.1; done")], log_path="ticker.log")
    log = logdir / "ticker.log"
    _until(lambda: log.exists() and b"tick1" in log.read_bytes())
    log.rename(logdir / "ticker.log.1")  # kubelet's rotation
    cri.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
    _until(lambda: log.exists() and b" stdout F tick" in log.read_bytes())
    cri.runtime.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
    code, _ = _code(cri.runtime.ReopenContainerLog,
                    pb.ReopenContainerLogRequest(container_id=cid))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_capabilities_and_privileged(cri, pod):
    p = pod()
    drop = pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(drop_capabilities=["ALL"], add_capabilities=["CHOWN"])))
    cid = p.container("lean", ["sleep", "300"], linux=drop)
    eff = p.exec(cid, ["sh", "-c", "grep CapEff /proc/self/status"]).stdout.split()[-1]
    assert int(eff, 16) == 1 << 0  # CAP_CHOWN only
    # a privileged container needs a privileged pod
    priv = pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        privileged=True))
    code, msg = _code(lambda: p.container("priv", ["true"], linux=priv))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "privileged" in msg
    pp = pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        privileged=True)))
    cid = pp.container("priv", ["sleep", "300"], linux=priv)
    eff = pp.exec(cid, ["sh", "-c", "grep CapEff /proc/self/status"]).stdout.split()[-1]
    assert int(eff, 16) > 1 << 20  # every capability


def test_seccomp_profiles(cri, pod, tmp_path):
    def sc(profile_type, ref=""):
        return pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
            seccomp=pb.SecurityProfile(profile_type=profile_type, localhost_ref=ref)))

    def mode(cid):
        out = p.exec(cid, ["grep", "^Seccomp:", "/proc/self/status"]).stdout.split()
        return int(out[-1])

    p = pod()
    default = p.container("default", ["sleep", "300"],
                          linux=sc(pb.SecurityProfile.RuntimeDefault))
    unconfined = p.container("unconfined", ["sleep", "300"],
                             linux=sc(pb.SecurityProfile.Unconfined))
    assert (mode(default), mode(unconfined)) == (2, 0)
    profile = tmp_path / "no-mkdir.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": '
                       '["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}')
    local = p.container("local", ["sleep", "300"],
                        linux=sc(pb.SecurityProfile.Localhost, str(profile)))
    r = p.exec(local, ["mkdir", "/tmp/x"])
    assert r.exit_code != 0 and p.exec(local, ["touch", "/tmp/y"]).exit_code == 0


def test_orphaned_engine_containers_are_removed_at_start(cri, pod):
    from corral.cri.runtime import RuntimeService
    from corral.engine.engine import Engine

    p = pod()

    made = subprocess.run([CORRAL, "--root", str(cri.root), "create", "--network", "none",
                           "--label", "io.corral.cri.kind=container", "--name",
                           f"corral-test-orphan-{uuid.uuid4().hex[:6]}", "busybox", "true"],
                          capture_output=True, text=True, check=True).stdout.strip()
    young = RuntimeService(Engine(root=cri.root), orphan_grace=3600)
    young.exits.close()
    assert made not in young.removed_orphans
    service = RuntimeService(Engine(root=cri.root), orphan_grace=0)
    service.exits.close()
    assert service.removed_orphans == [made]
    out = subprocess.run([CORRAL, "--root", str(cri.root), "ps", "-aq", "--no-trunc"],
                         capture_output=True, text=True, check=True).stdout
    assert made not in out
    # the server's own pods are not orphans
    status = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=p.id))
    assert status.status.state == pb.SANDBOX_READY


def test_pod_cgroup_parent_and_sysctls(cri, pod):
    parent = f"/corral-test-{uuid.uuid4().hex[:8]}"
    try:
        p = pod(linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent,
                                               sysctls={"net.ipv4.ip_forward": "1"}))
        cid = p.container("main", ["sleep", "300"])
        status = cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
            container_id=cid, verbose=True))
        import json

        pid = json.loads(status.info["info"])["pid"]
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        assert any(line.split(":", 2)[2] == f"{parent}/corral-{cid}" for line in lines), lines
        infra = json.loads(cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(
            pod_sandbox_id=p.id, verbose=True)).info["info"])["pid"]
        assert any(line.split(":", 2)[2] == f"{parent}/corral-{p.id}"
                   for line in Path(f"/proc/{infra}/cgroup").read_text().splitlines())
        assert p.exec(cid, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout == b"1\n"
        code, _ = _code(lambda: pod(linux=pb.LinuxPodSandboxConfig(
            cgroup_parent="relative.slice")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        p.remove()
    finally:  # the parent cgroup (kubelet's to make and remove) in every hierarchy
        name = parent.lstrip("/")
        for d in [Path("/sys/fs/cgroup") / name] + [
                base / name for base in Path("/sys/fs/cgroup").iterdir() if base.is_dir()]:
            if d.is_dir():
                for leaf in (x for x in d.iterdir() if x.is_dir()):
                    leaf.rmdir()
                d.rmdir()


def test_env_workdir_mounts_and_devices(cri, pod, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from-host\n")
    rw = tmp_path / "rw"
    rw.mkdir()
    p = pod()
    cid = p.container(
        "io", ["sleep", "300"], working_dir="/work",
        envs=[pb.KeyValue(key="GREETING", value=b"hi there")],
        mounts=[pb.Mount(container_path="/data", host_path=str(data), readonly=True),
                pb.Mount(container_path="/rw", host_path=str(rw),
                         propagation=pb.PROPAGATION_HOST_TO_CONTAINER)],
        devices=[pb.Device(container_path="/dev/corral-null", host_path="/dev/null",
                           permissions="rwm")])
    r = p.exec(cid, ["sh", "-c", 'echo "$GREETING"; pwd; cat /data/in.txt'])
    assert r.stdout == b"hi there\n/work\nfrom-host\n"
    assert p.exec(cid, ["touch", "/data/x"]).exit_code != 0
    assert p.exec(cid, ["sh", "-c", "echo back > /rw/out.txt"]).exit_code == 0
    assert (rw / "out.txt").read_text() == "back\n"
    assert p.exec(cid, ["sh", "-c", "echo x > /dev/corral-null && test -c /dev/corral-null"]
                  ).exit_code == 0
    status = cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
    assert sorted(m.container_path for m in status.mounts) == ["/data", "/rw"]


def test_pid_namespaces_host_pod_and_container(cri, pod):
    def ns(cid, pod_):
        return pod_.exec(cid, ["readlink", "/proc/self/ns/pid"]).stdout.decode().strip()

    host = pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(pid=pb.NODE, ipc=pb.NODE))))
    cid = host.container("main", ["sleep", "300"])
    assert ns(cid, host) == os.readlink("/proc/self/ns/pid")
    assert host.exec(cid, ["readlink", "/proc/self/ns/ipc"]).stdout.decode().strip() == \
        os.readlink("/proc/self/ns/ipc")
    shared = pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(pid=pb.POD))))
    a = shared.container("a", ["sleep", "300"])
    b = shared.container("b", ["sleep", "301"])
    assert ns(a, shared) == ns(b, shared) != os.readlink("/proc/self/ns/pid")
    procs = shared.exec(a, ["ps", "-o", "pid,args"]).stdout.decode()
    assert "catatonit" in procs and "sleep 301" in procs
    private = pod()  # the default: a PID namespace per container
    c, d = private.container("c", ["sleep", "300"]), private.container("d", ["sleep", "300"])
    assert ns(c, private) != ns(d, private)


def test_target_pid_namespace_host_shm_and_the_engine_record(cri, pod):
    def ns(cid, pod_, kind="pid"):
        return pod_.exec(cid, ["readlink", f"/proc/self/ns/{kind}"]).stdout.decode().strip()

    p = pod()
    a = p.container("a", ["sleep", "300"])
    b = p.container("b", ["sleep", "301"], linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(namespace_options=pb.NamespaceOption(
            pid=pb.TARGET, target_id=a)),
        resources=pb.LinuxContainerResources(oom_score_adj=500)))
    assert ns(a, p) == ns(b, p) and "sleep 300" in p.exec(b, ["ps", "-o", "args"]).stdout.decode()
    assert p.exec(b, ["cat", "/proc/self/oom_score_adj"]).stdout == b"500\n"
    # the engine knows what the container was made with (inspect, restart, commit)
    record = json.loads(subprocess.run([CORRAL, "--root", str(cri.root), "inspect", b],
                                       capture_output=True, text=True, check=True).stdout)
    config = record[0]["ContainerConfig"]
    assert (config["pid"], config["ipc"], config["uts"], config["network"]) == (
        f"container:{a}", f"container:{p.id}", f"container:{p.id}", f"container:{p.id}")
    assert config["oom_score_adj"] == 500
    # a target outside the pod: INVALID_ARGUMENT, nothing made
    other = pod()
    before = subprocess.run([CORRAL, "--root", str(cri.root), "ps", "-aq"],
                            capture_output=True, text=True, check=True).stdout
    code, message = _code(lambda: other.container("c", ["true"], linux=pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(namespace_options=pb.NamespaceOption(
            pid=pb.TARGET, target_id=a)))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "target_id" in message
    assert subprocess.run([CORRAL, "--root", str(cri.root), "ps", "-aq"], capture_output=True,
                          text=True, check=True).stdout == before
    # a hostIPC pod: the node's /dev/shm too (as containerd)
    host = pod(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=pb.NamespaceOption(ipc=pb.NODE))))
    cid = host.container("main", ["sleep", "300"])
    note = Path(f"/dev/shm/corral-test-{uuid.uuid4().hex[:8]}")
    try:
        note.write_text("from the node\n")
        assert host.exec(cid, ["cat", str(note)]).stdout == b"from the node\n"
    finally:
        note.unlink()


def test_stop_signal_and_grace_period(cri, pod):
    p = pod()
    script = 'trap "echo got-int; exit 0" INT; while :; do sleep 0.1; done'
    cid = p.container("graceful", ["sh", "-c", script], stop_signal=pb.SIGNAL_SIGINT)
    time.sleep(0.3)  # the trap is set
    cri.runtime.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10))
    status = cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
    assert (status.state, status.exit_code, status.stop_signal) == (
        pb.CONTAINER_EXITED, 0, pb.SIGNAL_SIGINT)
    # no grace period: killed at once
    cid = p.container("stubborn", ["sh", "-c", "trap '' TERM INT; while :; do sleep 0.1; done"])
    started = time.monotonic()
    cri.runtime.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
    assert time.monotonic() - started < 5
    status = cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
    assert (status.state, status.exit_code) == (pb.CONTAINER_EXITED, 137)


def test_masked_and_readonly_paths(cri, pod):
    p = pod()
    linux = pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
        masked_paths=["/proc/cpuinfo", "/proc/scsi"], readonly_paths=["/tmp"]))
    cid = p.container("masked", ["sleep", "300"], linux=linux)
    assert p.exec(cid, ["cat", "/proc/cpuinfo"]).stdout == b""
    assert p.exec(cid, ["touch", "/tmp/x"]).exit_code != 0
    plain = p.container("plain", ["sleep", "300"])
    assert p.exec(plain, ["cat", "/proc/cpuinfo"]).stdout != b""
    assert p.exec(plain, ["touch", "/tmp/x"]).exit_code == 0


def _traces(root: Path, ident: str) -> list[str]:
    """What is left on the host of an engine container or infra of `root`: its records,
    netns, CNI cache entries and leases' owner files, exit and lock files, mounts."""
    found = [str(p) for d in ("cri/sandboxes", "cri/containers", "engine/netns",
                              "engine/exits", "engine/locks", "networks/cni/results",
                              "storage/containers")
             if (root / d).is_dir() for p in (root / d).iterdir() if ident in p.name]
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if ident in line]
    return found


def test_pods_started_and_removed_in_parallel(cri, pod):
    """What kubelet's pod workers do: 8 pods brought up and down at once, each on its own
    thread (bench/cri.sh times the same). All come up with distinct addresses; afterwards
    nothing of them is left: no record, engine container, netns, CNI cache entry or
    lease, exit or lock file, mount."""
    from concurrent.futures import ThreadPoolExecutor

    rt, n = cri.runtime, 8
    network = os.environ.get("CORRAL_TEST_DEFAULT_NETWORK", "")
    up = threading.Barrier(n)

    def one(i: int) -> tuple[str, str, str]:
        p = Pod(cri, f"corral-test-par{i}-{uuid.uuid4().hex[:4]}")
        cid = p.container("main", ["sleep", "300"])
        ip = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(
            pod_sandbox_id=p.id)).status.network.ip
        assert p.exec(cid, ["true"]).exit_code == 0
        up.wait(60)  # all up at once before any goes down
        p.remove()
        return p.id, cid, ip

    with ThreadPoolExecutor(n) as pool:
        made = list(pool.map(one, range(n)))
    ips = [ip for _, _, ip in made]
    assert len(set(ips)) == n and all(ips), ips
    left = {s.id for s in rt.ListPodSandbox(pb.ListPodSandboxRequest()).items}
    assert not left & {sid for sid, _, _ in made}
    out = subprocess.run([CORRAL, "--root", str(cri.root), "ps", "-aq", "--no-trunc"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert not set(out) & {x for sid, cid, _ in made for x in (sid, cid)}
    assert [t for sid, cid, _ in made for x in (sid, cid) for t in _traces(cri.root, x)] == []
    if network:
        assert not set(leases(network)) & set(ips)


def test_exits_are_cleaned_up_by_the_server(cri, pod):
    """The server is its containers' cleaner (conmon's exit hook leaves the work to it):
    a container that exits on its own is deleted from the runtime and unmounted, an
    infra that dies has its network torn down, without any StopPodSandbox."""
    p = pod()
    cid = p.container("brief", ["true"])
    bundle = cri.root / "storage" / "containers" / cid
    # the exit hook sees this live pid and leaves (no `corral container cleanup` process)
    assert json.loads((bundle / "state.json").read_text())["rm_client"] == cri.proc.pid

    def cleaned(path: Path) -> bool:
        state = json.loads((path / "state.json").read_text())
        return state.get("pid") is None and state.get("status") == "exited" and \
            not os.path.ismount(path / "merged")

    _until(lambda: cleaned(bundle))
    status = cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
    assert (status.state, status.exit_code) == (pb.CONTAINER_EXITED, 0)
    infra = cri.root / "storage" / "containers" / p.id
    pid = json.loads((infra / "state.json").read_text())["pid"]
    netns = cri.root / "engine" / "netns" / p.id
    assert netns.exists()
    os.kill(pid, signal.SIGKILL)
    _until(lambda: cleaned(infra) and not netns.exists())
    assert json.loads((infra / "state.json").read_text())["networks"] == []
    status = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(
        pod_sandbox_id=p.id)).status
    assert status.state == pb.SANDBOX_NOTREADY


def test_spdy_exec_tty_resize_and_attach(cri, pod):
    """SPDY/3.1 (crictl's and kubelet's default) on corral's streaming server; the
    framing itself is compared with containerd's in tests/interop."""
    from tests.support import spdy_client

    p = pod()
    cid = p.container("main", ["sleep", "300"])
    url = cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=["sh", "-c", "read x; stty size"],
                                          tty=True, stdin=True, stdout=True)).url
    out = spdy_client.remotecommand(url, stdin=b"go\n", stderr=False, tty=True,
                                    resize=(17, 91))
    assert out["protocol"] == "v4.channel.k8s.io"
    assert b"17 91" in out["stdout"]
    assert b'"status":"Success"' in out["error"]
    talker = p.container("talker", ["sh", "-c", "read x; echo heard:$x; sleep 1"], stdin=True)
    url = cri.runtime.Attach(pb.AttachRequest(container_id=talker, stdin=True, stdout=True,
                                              stderr=True)).url
    out = spdy_client.remotecommand(url, stdin=b"spdy\n")
    assert out["stdout"] == b"heard:spdy\n"
