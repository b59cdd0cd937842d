"""`corral pull` / `corral push` into and out of a real store, against the in-memory
registry of tests/support/fake_registry.py (faults injected there).

Pulls fetch layers in parallel and apply each while it downloads; these tests
check the store afterwards: a dropped connection resumes, a wrong digest or a
registry that keeps failing leaves no image and no layer (the store as it was,
apart from verified blobs kept for the next pull), and the next pull finishes
the job without fetching again what it had.
"""

from __future__ import annotations

import json
import os

import pytest
from tests.integration.test_images_cli import Corral, corral  # noqa: F401 - the fixture
from tests.support.fake_registry import FakeRegistry, sha256
from tests.unit.test_registry_client import put_image


@pytest.fixture
def reg():
    with FakeRegistry() as r:
        yield r


def _blob_gets(reg: FakeRegistry, digest: str) -> int:
    return sum(1 for m, p, s in reg.log if m == "GET" and p.endswith(f"/blobs/{digest}"))


def test_pull_layers_in_parallel_and_push_back(corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    _, blobs = put_image(reg, "app", "1", layers=5, size=400_000)
    out = corral("pull", f"{reg.host}/app:1")
    image_id = out.out.strip()
    assert "Writing manifest" in out.err
    state = corral.store_state()
    assert len(state["layers"]) == 5 and len(state["images"]) == 1
    assert {sha256(b).split(":")[1] for b in blobs} <= set(state["blobs"])
    info = json.loads(corral("inspect", f"{reg.host}/app:1").out)[0]
    assert info["Id"].endswith(image_id)
    again = corral("pull", f"{reg.host}/app:1")
    assert again.err.count("skipped: already exists") == 5
    reg.log.clear()
    corral("push", f"{reg.host}/app:1", f"{reg.host}/copy:2")
    assert reg.manifests[("copy", "2")] == reg.manifests[("app", "1")]
    assert not [p for m, p, s in reg.log if m == "PATCH"]


def test_dropped_connections_resume(corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    put_image(reg, "app", "1", layers=3, size=2 << 20)
    reg.faults = ["drop"] * 4
    corral("pull", "-q", f"{reg.host}/app:1")
    assert 206 in [s for m, p, s in reg.log if "/blobs/" in p]
    state = corral.store_state()
    assert len(state["layers"]) == 3 and len(state["images"]) == 1


def test_wrong_digest_commits_nothing(corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    _, blobs = put_image(reg, "app", "1", layers=2)
    reg.corrupt_blobs = {sha256(blobs[1])}
    result = corral("pull", f"{reg.host}/app:1", check=False)
    assert result.returncode == 125
    assert "digest mismatch" in result.err and "Traceback" not in result.err
    state = corral.store_state()
    assert state["images"] == [] and state["layers"] == []
    assert sha256(blobs[1]).split(":")[1] not in state["blobs"]


def test_server_error_then_the_next_pull_finishes(corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    _, blobs = put_image(reg, "app", "1", layers=3, size=200_000)
    reg.fail_blobs = {sha256(blobs[2])}
    result = corral("pull", "--retry", "1", f"{reg.host}/app:1", check=False)
    assert result.returncode == 125
    assert "500" in result.err and "Traceback" not in result.err
    assert sha256(blobs[2]) in result.err
    state = corral.store_state()
    assert state["images"] == [] and state["layers"] == []
    kept = set(state["blobs"])
    reg.fail_blobs = set()
    corral("pull", "-q", f"{reg.host}/app:1")
    for blob in blobs[:2]:
        if sha256(blob).split(":")[1] in kept:
            assert _blob_gets(reg, sha256(blob)) == 1   # not fetched again
    assert len(corral.store_state()["images"]) == 1


def test_push_errors_are_one_line(corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    corral("image", "busybox", "bb")
    reg.fail_always = True
    result = corral("push", "--retry", "0", "bb", f"{reg.host}/bb:1", check=False)
    assert result.returncode == 125 and "500" in result.err and "Traceback" not in result.err
    missing = corral("pull", "--retry", "0", f"{reg.host}/none:1", check=False)
    assert missing.returncode == 125 and "500" in missing.err


def test_killed_pull_leaves_a_consistent_store(corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    import signal
    import subprocess
    import time

    from tests.integration.test_images_cli import CORRAL

    _, blobs = put_image(reg, "app", "1", layers=3, size=600_000)
    slow = sha256(blobs[2])
    reg.slow_blobs = {slow}
    proc = subprocess.Popen([CORRAL, "--root", str(corral.root), "pull", "-q",
                             f"{reg.host}/app:1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while _blob_gets(reg, slow) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)           # mid-blob
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    reg.slow_blobs = set()
    corral("pull", "-q", f"{reg.host}/app:1")
    state = corral.store_state()
    assert len(state["images"]) == 1 and len(state["layers"]) == 3
    assert all(layer["users"] == [f"image:{state['images'][0]['id']}"]
               for layer in state["layers"]), state["layers"]
    assert not [p for p in (corral.root / "storage" / "layers").iterdir()
                if p.name.startswith("tmp-")]


def test_killed_pull_resumes_the_partial_blob_with_range(corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    """A pull killed mid-blob leaves ingest/partial-<alg>-<hex> (no blob, no image);
    the next pull asks for the rest with Range and verifies the whole blob."""
    import hashlib
    import signal
    import subprocess
    import time

    from tests.integration.test_images_cli import CORRAL

    _, blobs = put_image(reg, "app", "1", layers=1, size=1_200_000)
    blob = blobs[0]
    digest = sha256(blob)
    reg.slow_blobs = {digest}
    partial = corral.root / "content" / "ingest" / f"partial-sha256-{digest.split(':')[1]}"
    proc = subprocess.Popen([CORRAL, "--root", str(corral.root), "pull", "-q",
                             f"{reg.host}/app:1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if partial.exists() and partial.stat().st_size >= 3 * 65536:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    have = partial.stat().st_size
    assert 3 * 65536 <= have < len(blob)
    assert partial.read_bytes() == blob[:have]
    state = corral.store_state()
    assert state["images"] == [] and digest.split(":")[1] not in state["blobs"]

    reg.slow_blobs = set()
    reg.ranges.clear()
    corral("pull", "-q", f"{reg.host}/app:1")
    assert reg.ranges == [(digest, f"bytes={have}-")]
    assert (digest, 206) in [(p.rsplit("/", 1)[1], s) for m, p, s in reg.log
                             if m == "GET" and "/blobs/" in p]
    stored = corral.root / "content" / "blobs" / "sha256" / digest.split(":")[1]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest.split(":")[1]
    assert not partial.exists()
    state = corral.store_state()
    assert len(state["images"]) == 1 and len(state["layers"]) == 1


def test_a_damaged_partial_fails_the_pull_once_and_the_next_pull_starts_over(
        corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    """Bytes in a partial that do not belong to the blob: the digest over the
    whole blob fails, nothing is committed, the partial goes; the next pull works."""
    _, blobs = put_image(reg, "app", "1", layers=1, size=300_000)
    digest = sha256(blobs[0])
    ingest = corral.root / "content" / "ingest"
    ingest.mkdir(parents=True, exist_ok=True)
    partial = ingest / f"partial-sha256-{digest.split(':')[1]}"
    partial.write_bytes(b"\0" * 1000)
    result = corral("pull", "-q", f"{reg.host}/app:1", check=False)
    assert result.returncode == 125 and "Traceback" not in result.err
    assert not partial.exists()
    state = corral.store_state()
    assert state["images"] == [] and state["layers"] == []
    assert digest.split(":")[1] not in state["blobs"]
    reg.ranges.clear()
    corral("pull", "-q", f"{reg.host}/app:1")
    assert reg.ranges == []
    assert len(corral.store_state()["images"]) == 1


def test_two_pulls_of_one_image_at_once(corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    """The second pull finds the first one's partial locked and writes its own
    file; both finish, the store has the image once and no ingest files."""
    import subprocess

    from tests.integration.test_images_cli import CORRAL

    _, blobs = put_image(reg, "app", "1", layers=2, size=500_000)
    reg.slow_blobs = {sha256(blobs[0])}
    procs = [subprocess.Popen([CORRAL, "--root", str(corral.root), "pull", "-q",
                               f"{reg.host}/app:1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True)
             for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out.decode().strip(), err.decode()))
    assert [r[0] for r in results] == [0, 0], results
    assert results[0][1] == results[1][1]
    state = corral.store_state()
    assert len(state["images"]) == 1 and len(state["layers"]) == 2
    assert os.listdir(corral.root / "content" / "ingest") == []
    # normally both fetch the slow blob at once (the second into its own file);
    # a second pull starting after the first committed it skips the fetch
    assert sum(1 for m, p, s in reg.log
               if m == "GET" and p.endswith(f"/blobs/{sha256(blobs[0])}")) in (1, 2)


@pytest.mark.parametrize("server", ["slow", "stalled"])
def test_ctrl_c_mid_blob_stops_at_once_and_the_next_pull_resumes(
        corral: Corral, reg: FakeRegistry, server: str) -> None:  # noqa: F811
    """Also when the registry sends nothing more: the blocked read is aborted
    (socket shutdown), not waited out (30 s timeout, then retries)."""
    import signal
    import subprocess
    import time

    from tests.integration.test_images_cli import CORRAL

    _, blobs = put_image(reg, "app", "1", layers=1, size=1_000_000)
    digest = sha256(blobs[0])
    if server == "slow":
        reg.slow_blobs = {digest}
    else:
        reg.stall_blobs = {digest}
    partial = corral.root / "content" / "ingest" / f"partial-sha256-{digest.split(':')[1]}"
    proc = subprocess.Popen([CORRAL, "--root", str(corral.root), "pull", "-q",
                             f"{reg.host}/app:1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                partial.exists() and partial.stat().st_size >= 2 * 65536):
            time.sleep(0.05)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and took < 0.9, (proc.returncode, took)
    have = partial.stat().st_size
    assert 0 < have < len(blobs[0])
    reg.slow_blobs = reg.stall_blobs = set()
    reg.ranges.clear()
    corral("pull", "-q", f"{reg.host}/app:1")
    assert reg.ranges == [(digest, f"bytes={have}-")]
    assert len(corral.store_state()["images"]) == 1


def test_a_pull_that_gives_up_mid_blob_is_resumed_by_the_next(
        corral: Corral, reg: FakeRegistry) -> None:  # noqa: F811
    """No retries left after the connection drops half-way: the pull fails, the
    half is kept (not as a blob), the next pull asks for the other half."""
    _, blobs = put_image(reg, "app", "1", layers=1, size=400_000)
    digest = sha256(blobs[0])
    reg.drop_blobs = {digest}
    failed = corral("pull", "--retry", "0", f"{reg.host}/app:1", check=False)
    reg.drop_blobs = set()
    assert failed.returncode == 125 and "Traceback" not in failed.err
    partial = corral.root / "content" / "ingest" / f"partial-sha256-{digest.split(':')[1]}"
    have = partial.stat().st_size
    assert have == len(blobs[0]) // 2 and partial.read_bytes() == blobs[0][:have]
    state = corral.store_state()
    assert state["images"] == [] and state["layers"] == []
    reg.ranges.clear()
    corral("pull", "-q", f"{reg.host}/app:1")
    assert reg.ranges == [(digest, f"bytes={have}-")]
    assert len(corral.store_state()["images"]) == 1 and not partial.exists()
