"""CRI mount features kubelet asks about through Status: Mount.recursive_read_only
(per runtime handler: `rro`) and Mount.mount_options (RuntimeFeatures.mount_options),
checked by what the container can do on the mount and by its mountinfo.

The server, pods and teardown are test_cri.py's (`cri` and `pod` fixtures).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from tests.integration import test_cri as base
from tests.integration.test_cri import _code, grpc, pb

cri, pod = base.cri, base.pod  # the module's server and pods (fixtures)

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers, CNI)")]


@pytest.fixture
def tree(tmp_path):
    """A host directory with a tmpfs mounted on its `sub` directory and an executable
    script."""
    top = tmp_path / "corral-test-tree"
    (top / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "corral-test-sub", str(top / "sub")],
                   check=True)
    script = top / "hello.sh"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    try:
        yield top
    finally:
        subprocess.run(["umount", "-l", str(top / "sub")], check=False)


def _handlers(cri) -> dict:
    return {h.name: h.features for h in cri.runtime.Status(pb.StatusRequest()).runtime_handlers}


def test_recursive_read_only_mount(cri, pod, tree):
    if not _handlers(cri)[""].recursive_read_only_mounts:
        pytest.skip("the default runtime has no rro on this kernel")
    p = pod()
    plain = p.container("plain", ["sleep", "300"], mounts=[pb.Mount(
        container_path="/data", host_path=str(tree), readonly=True)])
    rro = p.container("rro", ["sleep", "300"], mounts=[pb.Mount(
        container_path="/data", host_path=str(tree), readonly=True,
        recursive_read_only=True)])
    # read-only on top in both; the submount only with recursive_read_only
    for cid in (plain, rro):
        assert p.exec(cid, ["touch", "/data/x"]).exit_code != 0
    assert p.exec(plain, ["touch", "/data/sub/x"]).exit_code == 0
    out = p.exec(rro, ["touch", "/data/sub/y"])
    assert out.exit_code != 0 and b"Read-only" in out.stderr, out
    assert (tree / "sub" / "x").exists() and not (tree / "sub" / "y").exists()


def test_recursive_read_only_needs_readonly_private_and_a_capable_handler(cri, pod, tree):
    p = pod()
    for mount in (pb.Mount(container_path="/data", host_path=str(tree),
                           recursive_read_only=True),
                  pb.Mount(container_path="/data", host_path=str(tree), readonly=True,
                           recursive_read_only=True, propagation=pb.PROPAGATION_HOST_TO_CONTAINER)):
        code, message = _code(lambda m=mount: p.container("bad", ["true"], mounts=[m]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Mount /data: recursive_read_only needs readonly" in message
    if shutil.which("runc") and not _handlers(cri).get("runc", pb.RuntimeHandlerFeatures(
            recursive_read_only_mounts=True)).recursive_read_only_mounts:
        runc_pod = pod(runtime_handler="runc")
        code, message = _code(lambda: runc_pod.container("bad", ["true"], mounts=[pb.Mount(
            container_path="/data", host_path=str(tree), readonly=True,
            recursive_read_only=True)]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "recursive_read_only is not supported" in message and "'runc'" in message
        names = {c.metadata.name for c in cri.runtime.ListContainers(pb.ListContainersRequest(
            filter=pb.ContainerFilter(pod_sandbox_id=runc_pod.id))).containers}
        assert names == set()


def test_mount_options(cri, pod, tree):
    assert cri.runtime.Status(pb.StatusRequest()).features.mount_options
    p = pod()
    cid = p.container("main", ["sleep", "300"], mounts=[
        pb.Mount(container_path="/data", host_path=str(tree),
                 mount_options=["noexec", "nosuid", "nodev"]),
        pb.Mount(container_path="/exec", host_path=str(tree))])
    assert p.exec(cid, ["/exec/hello.sh"]).stdout == b"hello\n"
    out = p.exec(cid, ["sh", "-c", "/data/hello.sh"])
    assert out.exit_code == 126 and b"ermission denied" in out.stderr, out
    info = p.exec(cid, ["cat", "/proc/self/mountinfo"]).stdout.decode()
    options = next(line.split()[5].split(",") for line in info.splitlines()
                   if line.split()[4] == "/data")
    assert {"noexec", "nosuid", "nodev"} <= set(options), options
    code, message = _code(lambda: p.container("bad", ["true"], mounts=[pb.Mount(
        container_path="/data", host_path=str(tree), mount_options=["suidx"])]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "mount_options 'suidx'" in message
