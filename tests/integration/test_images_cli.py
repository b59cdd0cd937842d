"""`corral` image commands end to end (root): base image, run, save/load in every format,
import/export, rmi of an image in use, bad input leaving the store untouched.

Every test gets its own store (`--root` under a temporary directory, images named
corral-test-*); teardown unmounts whatever is left under it and removes it.
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
from tests.support.stores import remove_root, unmount_under

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")
BUSYBOX = "/bin/busybox"


class Corral:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([CORRAL, "--root", str(self.root), *args], input=input,
                                capture_output=True, timeout=timeout,
                                stdin=None if input is not None else subprocess.DEVNULL, check=False)
        result.out = result.stdout.decode(errors="replace")  # type: ignore[attr-defined]
        result.err = result.stderr.decode(errors="replace")  # type: ignore[attr-defined]
        if check and result.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} exited {result.returncode}\n"
                                 f"{result.out}\n{result.err}")
        return result

    def store_state(self) -> dict:
        """What the store holds: images, layers, containers, blobs."""
        home = self.root / "storage"
        state = {}
        for name in ("images", "layers", "containers"):
            path = home / f"{name}.json"
            state[name] = json.loads(path.read_text()).get(name) if path.exists() else []
        blobs = self.root / "content" / "blobs" / "sha256"
        state["blobs"] = sorted(os.listdir(blobs)) if blobs.exists() else []
        return state


def _cleanup(root: Path) -> None:
    unmount_under(root)
    subprocess.run([str(REPO / ".venv" / "bin" / "corral-runtime"), "--root",
                    str(root / "runtime"), "list"], capture_output=True, check=False)
    remove_root(root)


@pytest.fixture
def corral():
    if not os.path.exists(CORRAL):
        pytest.skip(f"{CORRAL} is not installed (pip install -e .)")
    root = Path(tempfile.mkdtemp(prefix="corral-test-store-"))
    try:
        yield Corral(root)
    finally:
        _cleanup(root)


@pytest.fixture
def busybox(corral):
    name = f"corral-test-bb-{uuid.uuid4().hex[:8]}"
    corral("image", "busybox", name)
    return name


def test_busybox_image_runs(corral, busybox):
    result = corral("run", "--rm", busybox, "echo", "hello")
    assert result.out == "hello\n"
    images = json.loads(corral("images", "--format", "json").out)
    assert [n for i in images for n in i["Names"]] == [f"docker.io/library/{busybox}:latest"]
    assert corral("ps", "-a", "-q").out == ""  # --rm removed it
    assert corral("run", "--rm", busybox, "sh", "-c", "exit 7", check=False).returncode == 7


def test_run_user_workdir_env_entrypoint(corral, busybox):
    out = corral("run", "--rm", "-u", "nobody", "-w", "/tmp", "-e", "X=1", busybox,
                 "sh", "-c", 'id -u; pwd; echo $X').out
    assert out.split() == ["65534", "/tmp", "1"]
    assert corral("run", "--rm", "--entrypoint", "echo", busybox, "via", "entrypoint"
                  ).out == "via entrypoint\n"
    bad = corral("run", "--rm", "-u", "nosuchuser", busybox, "true", check=False)
    assert bad.returncode == 125 and "nosuchuser" in bad.err and "Traceback" not in bad.err
    assert corral("ps", "-a", "-q").out == ""


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive", "oci-dir"])
def test_save_load_round_trip(corral, busybox, fmt, tmp_path):
    image_id = json.loads(corral("inspect", busybox).out)[0]["Id"]
    target = tmp_path / "saved"
    corral("save", "--format", fmt, "-o", str(target), busybox)
    corral("rmi", busybox)
    assert corral.store_state()["images"] == []
    loaded = corral("load", "-i", str(target))
    assert f"docker.io/library/{busybox}:latest" in loaded.out
    assert json.loads(corral("inspect", busybox).out)[0]["Id"] == image_id
    assert corral("run", "--rm", busybox, "echo", "ok").out == "ok\n"


def test_import_export_round_trip(corral, busybox, tmp_path):
    name = "corral-test-c-" + uuid.uuid4().hex[:6]
    corral("run", "--name", name, busybox, "sh", "-c", "echo data > /marker")
    exported = tmp_path / "fs.tar"
    corral("export", "-o", str(exported), name)
    new = "corral-test-imported:" + "v1"
    image_id = corral("import", "--change", 'CMD ["cat", "/marker"]', "--change",
                      "ENV FOO=bar", str(exported), new).out.strip()
    assert len(image_id) == 64
    assert corral("run", "--rm", new).out == "data\n"
    assert corral("run", "--rm", new, "sh", "-c", "echo $FOO").out == "bar\n"
    # stdin import
    via_stdin = corral("import", "-", "corral-test-stdin", input=exported.read_bytes()).out
    assert len(via_stdin.strip()) == 64
    corral("rm", name)


def test_rmi_of_image_in_use_fails(corral, busybox):
    name = "corral-test-c-" + uuid.uuid4().hex[:6]
    corral("create", "--name", name, busybox, "true")
    result = corral("rmi", busybox, check=False)
    assert result.returncode == 2
    assert "in use" in result.err and name in result.err and len(result.err.splitlines()) == 1
    assert corral("images", "-q").out.strip()
    corral("rm", name)
    corral("rmi", busybox)
    state = corral.store_state()
    assert state["images"] == [] and state["layers"] == [] and state["blobs"] == []


def test_tag_untag_history_prune(corral, busybox):
    corral("tag", busybox, "corral-test-other:2")
    assert len(json.loads(corral("inspect", busybox).out)[0]["RepoTags"]) == 2
    assert "Untagged" in corral("rmi", "corral-test-other:2").out
    assert "corral image busybox" in corral("history", busybox).out
    corral("image", "prune", "-a")
    assert corral.store_state()["images"] == []


@pytest.mark.parametrize("case", ["not-a-tar", "plain-tar", "missing", "bad-name", "bad-import"])
def test_bad_input_one_line_and_nothing_stored(corral, busybox, tmp_path, case):
    before = corral.store_state()
    text = tmp_path / "text"
    text.write_text("not an archive\n" * 50)
    plain = tmp_path / "plain.tar"
    subprocess.run(["tar", "-C", str(tmp_path), "-cf", str(plain), "text"], check=True)
    argv = {
        "not-a-tar": ["load", "-i", str(text)],
        "plain-tar": ["load", "-i", str(plain)],
        "missing": ["load", "-i", str(tmp_path / "missing.tar")],
        "bad-name": ["import", str(plain), "UPPER/case"],
        "bad-import": ["import", str(text), "corral-test-x"],
    }[case]
    result = corral(*argv, check=False)
    assert result.returncode == 125, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert "Traceback" not in result.err
    expected = {"not-a-tar": str(text), "plain-tar": str(plain), "missing": "missing.tar",
                "bad-name": "UPPER/case", "bad-import": str(text)}[case]
    assert expected in lines[0]
    assert corral.store_state() == before


@pytest.mark.skipif(not os.environ.get("CORRAL_TEST_DEBIAN"),
                    reason="debootstrap downloads ~40 MB and takes minutes: set CORRAL_TEST_DEBIAN=1")
def test_debian_image(corral):
    if not shutil.which("debootstrap") and not os.path.exists("/usr/sbin/debootstrap"):
        pytest.skip("debootstrap is not installed")
    name = f"corral-test-debian-{uuid.uuid4().hex[:6]}"
    corral("image", "debian", name, timeout=1800)
    out = corral("run", "--rm", name, "sh", "-c", "cat /etc/debian_version; id -un").out
    assert out.splitlines()[1] == "root" and out.splitlines()[0][0].isdigit()
