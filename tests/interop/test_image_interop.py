"""Images between corral and real peers: podman save/load, skopeo copy, umoci unpack,
oci-image-tool validate.

podman runs with the private store of conftest.py (`podman_store`, holding
localhost/corral-test-busybox:latest imported from a busybox rootfs); images it
loads from corral are named corral-test-* and removed in teardown. corral gets a
temporary store per test (`--root`), unmounted and removed in teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from tests.interop.conftest import CORRAL_RUNTIME, IMAGE, RUNC, Podman, run_cmd
from tests.support.stores import remove_root

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")
SKOPEO = shutil.which("skopeo")
UMOCI = shutil.which("umoci")
OCI_IMAGE_TOOL = shutil.which("oci-image-tool")


def _cleanup(root: Path) -> None:
    remove_root(root)


@pytest.fixture
def work():
    base = Path(tempfile.mkdtemp(prefix="corral-test-interop-"))
    try:
        yield base
    finally:
        _cleanup(base)


@pytest.fixture
def corral(work):
    if not os.path.exists(CORRAL):
        pytest.skip(f"{CORRAL} is not installed (pip install -e .)")
    root = work / "store"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = run_cmd([CORRAL, "--root", str(root), *args], timeout=180)
        if check and result.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} exited {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture
def podman(podman_store):
    runtime = RUNC or CORRAL_RUNTIME
    client = Podman(runtime, podman_store)
    loaded: list[str] = []
    client.loaded = loaded  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        client.remove_all_named()
        for name in loaded:
            client("rmi", "-f", name)


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_save_loads_and_runs_in_corral(podman, corral, work, fmt):
    archive = work / f"podman-{fmt}.tar"
    podman("save", "--format", fmt, "-o", str(archive), IMAGE, check=True)
    loaded = corral("load", "-i", str(archive))
    assert f"Loaded image: {IMAGE}" in loaded.stdout
    assert corral("run", "--rm", IMAGE, "echo", "ok").stdout == "ok\n"
    podman_id = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=True).stdout
    assert json.loads(corral("inspect", IMAGE).stdout)[0]["Id"] == podman_id.strip()


def test_skopeo_layout_loads_and_runs_in_corral(podman, corral, work):
    if SKOPEO is None:
        pytest.skip("skopeo is not installed")
    archive = work / "podman.tar"
    podman("save", "-o", str(archive), IMAGE, check=True)
    layout = work / "layout"
    result = run_cmd([SKOPEO, "copy", f"docker-archive:{archive}", f"oci:{layout}:tag"])
    assert result.returncode == 0, result.stderr
    loaded = corral("load", "-i", str(layout))
    image_id = loaded.stdout.split("Loaded image: ")[1].strip()
    corral("tag", image_id, "corral-test-skopeo:1")
    assert corral("run", "--rm", "corral-test-skopeo:1", "echo", "ok").stdout == "ok\n"
    # skopeo's gzip-compressed OCI archive too
    oci_archive = work / "skopeo-oci.tar"
    result = run_cmd([SKOPEO, "copy", f"oci:{layout}:tag", f"oci-archive:{oci_archive}:x"])
    assert result.returncode == 0, result.stderr
    corral("rmi", "-f", "corral-test-skopeo:1")
    corral("load", "-i", str(oci_archive))


@pytest.fixture
def corral_image(corral):
    name = f"corral-test-saved-{uuid.uuid4().hex[:8]}"
    corral("image", "busybox", name)
    return f"docker.io/library/{name}:latest"


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_corral_save_loads_and_runs_in_podman(podman, corral, corral_image, work, fmt):
    archive = work / f"corral-{fmt}.tar"
    corral("save", "--format", fmt, "-o", str(archive), corral_image)
    podman.loaded.append(corral_image)
    result = podman("load", "-i", str(archive), check=True)
    assert corral_image in result.stdout + result.stderr
    out = podman("run", "--rm", "--network", "none", corral_image, "echo", "hello", check=True)
    assert out.stdout == "hello\n"


def test_corral_layout_unpacks_with_umoci_and_validates(corral, corral_image, work):
    layout = work / "corral-layout"
    corral("save", "--format", "oci-dir", "-o", str(layout), corral_image)
    if OCI_IMAGE_TOOL is None:
        pytest.skip("oci-image-tool is not installed")
    result = run_cmd([OCI_IMAGE_TOOL, "validate", "--type", "image", str(layout)])
    assert result.returncode == 0, result.stdout + result.stderr
    # the oci-archive is the same layout packed: unpack and validate it too
    archive = work / "corral-oci.tar"
    corral("save", "--format", "oci-archive", "-o", str(archive), corral_image)
    unpacked = work / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-C", str(unpacked), "-xf", str(archive)], check=True)
    result = run_cmd([OCI_IMAGE_TOOL, "validate", "--type", "image", str(unpacked)])
    assert result.returncode == 0, result.stdout + result.stderr
    if UMOCI is None:
        pytest.skip("umoci is not installed")
    index = json.loads((layout / "index.json").read_text())
    ref = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    assert ref == corral_image  # podman's convention: the full name as ref.name
    bundle = work / "bundle"
    result = run_cmd([UMOCI, "unpack", "--image", f"{layout}:{ref}", str(bundle)])
    assert result.returncode == 0, result.stderr
    assert (bundle / "rootfs" / "bin" / "busybox").is_file()
    assert (bundle / "rootfs" / "bin" / "sh").is_symlink()
