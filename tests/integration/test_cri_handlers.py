"""CRI runtime handlers: RunPodSandboxRequest.runtime_handler picks the OCI runtime of the
pod's infra and containers; Status reports the handlers with their features; the map
comes from the runtimes found on the host or from the CRI config file
($CORRAL_CRI_CONFIG).

The server, pods and teardown are test_cri.py's (`cri` and `pod` fixtures).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.integration import test_cri as base
from tests.integration.test_cri import CORRAL, REPO, Pod, Server, _code, grpc, pb

cri, pod = base.cri, base.pod  # the module's server and pods (fixtures)
CORRAL_RUNTIME = str(REPO / ".venv" / "bin" / "corral-runtime")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers, CNI)"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]


def _runtime_list(runtime: str, root: Path) -> dict[str, str]:
    """{container id: status} of `runtime --root root list`."""
    out = subprocess.run([runtime, "--root", str(root), "list", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return {c["id"]: c["status"] for c in json.loads(out or "null") or []}


def _engine_ids(root: Path) -> list[str]:
    return subprocess.run([CORRAL, "--root", str(root), "ps", "-aq", "--no-trunc"],
                          capture_output=True, text=True, check=True).stdout.split()


def _rro_expected(runtime: str) -> bool:
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    features = json.loads(subprocess.run([runtime, "features"], capture_output=True,
                                         text=True, check=False).stdout or "{}")
    return release >= (5, 12) and "rro" in (features.get("mountOptions") or [])


def test_status_reports_the_detected_handlers(cri):
    status = cri.runtime.Status(pb.StatusRequest(verbose=True))
    handlers = {h.name: h.features for h in status.runtime_handlers}
    assert {"", "corral", "runc"} <= set(handlers)
    assert handlers["corral"].recursive_read_only_mounts == _rro_expected(CORRAL_RUNTIME)
    assert handlers["runc"].recursive_read_only_mounts == _rro_expected(shutil.which("runc"))
    assert not any(f.user_namespaces for f in handlers.values())
    config = json.loads(status.info["config"])["runtimeHandlers"]
    assert os.path.basename(config["runc"]) == "runc"
    assert os.path.basename(config[""]) == "corral-runtime"


def test_pod_with_the_runc_handler_runs_under_runc(cri, pod):
    p = pod(runtime_handler="runc")
    sid = p.id
    try:
        cid = p.container("main", ["sleep", "300"])
        runc = _runtime_list(shutil.which("runc"), cri.root / "runtime-runc")
        assert runc.get(sid) == "running" and runc.get(cid) == "running", runc
        ours = _runtime_list(CORRAL_RUNTIME, cri.root / "runtime")
        assert sid not in ours and cid not in ours
        # the pod's processes are runc's: its state names the same pid the CRI reports
        pid = json.loads(cri.runtime.ContainerStatus(pb.ContainerStatusRequest(
            container_id=cid, verbose=True)).info["info"])["pid"]
        state = json.loads(subprocess.run(
            [shutil.which("runc"), "--root", str(cri.root / "runtime-runc"), "state", cid],
            capture_output=True, text=True, check=True).stdout)
        assert state["pid"] == pid
        assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00300\x00"
        assert p.exec(cid, ["echo", "hi"]).stdout == b"hi\n"
        # the metrics find runc's cgroups as they find corral-runtime's
        mine = [m for m in cri.runtime.ListPodSandboxMetrics(
            pb.ListPodSandboxMetricsRequest()).pod_metrics if m.pod_sandbox_id == sid]
        procs = {x.name: x.value.value for x in mine[0].container_metrics[0].metrics}
        assert procs["container_processes"] == 1 and procs["container_threads"] == 1
        sandbox = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid))
        assert sandbox.status.runtime_handler == "runc"
        # a restarted server puts the pod's new containers under runc still
        cri.stop()
        cri.start()
        later = p.container("later", ["sleep", "300"])
        runc = _runtime_list(shutil.which("runc"), cri.root / "runtime-runc")
        assert runc.get(later) == "running", runc
        assert [x.runtime_handler for x in cri.runtime.ListPodSandbox(
            pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=sid))).items] == ["runc"]
    finally:
        p.remove()
    runc = _runtime_list(shutil.which("runc"), cri.root / "runtime-runc")
    assert sid not in runc and cid not in runc and later not in runc


def test_unknown_handler_is_not_found_and_leaves_nothing(cri):
    pods = {s.id for s in cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items}
    engine = _engine_ids(cri.root)
    records = sorted(os.listdir(cri.root / "cri" / "sandboxes"))
    code, message = _code(cri.runtime.RunPodSandbox, pb.RunPodSandboxRequest(
        config=base._pod_config("corral-test-nohandler"), runtime_handler="corral-test-nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "runtime_handler" in message and "'corral-test-nope'" in message
    assert {s.id for s in cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items} == pods
    assert _engine_ids(cri.root) == engine
    assert sorted(os.listdir(cri.root / "cri" / "sandboxes")) == records


@pytest.fixture
def configured(cri, tmp_path, monkeypatch):
    """A second server on the same store with a CRI config: handler "fast" is runc, and
    the default handler is "fast"."""
    conf = tmp_path / "cri.conf"
    conf.write_text('default_runtime_handler = "fast"\n\n[runtime_handlers]\n'
                    'fast = "runc"\nours = "corral-runtime"\n')
    monkeypatch.setenv("CORRAL_CRI_CONFIG", str(conf))
    server = Server(cri.root, cri.sock.parent / "configured.sock")
    server.start()
    try:
        yield server
    finally:
        try:
            for item in server.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items:
                if item.metadata.name.startswith("corral-test-conf"):
                    server.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=item.id))
                    server.runtime.RemovePodSandbox(
                        pb.RemovePodSandboxRequest(pod_sandbox_id=item.id))
        finally:
            server.stop()


def test_handlers_from_the_cri_config_file(configured):
    rt = configured.runtime
    names = {h.name for h in rt.Status(pb.StatusRequest()).runtime_handlers}
    assert names == {"", "fast", "ours"}
    p = Pod(configured, "corral-test-conf1")  # the default handler: runc
    try:
        cid = p.container("main", ["sleep", "300"])
        runc = _runtime_list(shutil.which("runc"), configured.root / "runtime-runc")
        assert runc.get(p.id) == "running" and runc.get(cid) == "running"
        code, message = _code(rt.RunPodSandbox, pb.RunPodSandboxRequest(
            config=base._pod_config("corral-test-conf2"), runtime_handler="runc"))
        assert code == grpc.StatusCode.NOT_FOUND and "'runc'" in message
    finally:
        p.remove()


def test_bad_cri_config_stops_the_server_naming_the_key(cri, tmp_path, monkeypatch):
    for text, words in (('[runtime_handlers]\nx = "corral-test-no-such-runtime"\n',
                         ["runtime_handlers.x", "corral-test-no-such-runtime"]),
                        ('colour = "blue"\n', ["unknown key 'colour'"]),
                        ('default_runtime_handler = "y"\n', ["default_runtime_handler"])):
        conf = tmp_path / "cri.conf"
        conf.write_text(text)
        monkeypatch.setenv("CORRAL_CRI_CONFIG", str(conf))
        server = Server(cri.root, cri.sock.parent / "bad.sock")
        with pytest.raises(AssertionError) as info:
            server.start()
        for word in words:
            assert word in str(info.value), info.value
        assert not (cri.sock.parent / "bad.sock").exists()
