"""corral-runtime `create` with $CORRAL_RUNTIME_AWAIT_CONFIG (set only by Corral's
engine): it waits for the bundle's config.json instead of failing at once."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from corral.runtime import AWAIT_CONFIG_ENV

RUNTIME = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "corral-runtime")


def _create(root: Path, bundle: Path, container_id: str, wait: str, err: Path
            ) -> subprocess.Popen:
    """The runtime's stderr goes to a file: the container's init keeps it open."""
    with open(err, "w") as log:
        return subprocess.Popen([RUNTIME, "--root", str(root), "create", "--bundle",
                                 str(bundle), container_id],
                                env=dict(os.environ, **{AWAIT_CONFIG_ENV: wait}),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log)


def test_create_waits_for_the_config(make_bundle, tmp_path):
    bundle = make_bundle()
    config = bundle.config_path.read_text()
    bundle.config_path.unlink()
    root = tmp_path / "state"
    err = tmp_path / "err"
    proc = _create(root, bundle.path, bundle.id, "30", err)
    try:
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting
        assert not (root / bundle.id).exists()
        staging = bundle.path / ".config.json.tmp"
        staging.write_text(config)
        os.replace(staging, bundle.config_path)
        assert proc.wait(timeout=60) == 0, err.read_text()
        state = subprocess.run([RUNTIME, "--root", str(root), "state", bundle.id],
                               capture_output=True, text=True, check=True).stdout
        assert json.loads(state)["status"] == "created"
    finally:
        proc.kill()
        subprocess.run([RUNTIME, "--root", str(root), "delete", "--force", bundle.id],
                       capture_output=True, timeout=60, check=False)


def test_create_gives_up_naming_the_file(make_bundle, tmp_path):
    bundle = make_bundle()
    bundle.config_path.unlink()
    root = tmp_path / "state"
    err = tmp_path / "err"
    proc = _create(root, bundle.path, bundle.id, "0.3", err)
    assert proc.wait(timeout=60) != 0
    assert f"{bundle.config_path}: not written within 0.3 s" in err.read_text()
    assert not (root / bundle.id).exists()


def test_without_the_variable_a_missing_config_fails_at_once(make_bundle, tmp_path):
    bundle = make_bundle()
    bundle.config_path.unlink()
    started = time.monotonic()
    result = subprocess.run([RUNTIME, "--root", str(tmp_path / "state"), "create",
                             "--bundle", str(bundle.path), bundle.id],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={k: v for k, v in os.environ.items() if k != AWAIT_CONFIG_ENV})
    assert result.returncode != 0
    assert "config.json" in result.stderr
    assert time.monotonic() - started < 10




def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_wait_is_cheap_and_wakes_soon_after_the_rename(make_bundle, tmp_path):
    """Ready early, the runtime waits without burning a CPU (short sleeps, then longer
    ones), holds no inotify instance (closing one waits for an SRCU grace period), and
    finishes soon after the rename; `create` still works."""
    bundle = make_bundle()
    config = bundle.config_path.read_text()
    bundle.config_path.unlink()
    root = tmp_path / "state"
    err = tmp_path / "err"
    proc = _create(root, bundle.path, bundle.id, "30", err)
    try:
        time.sleep(0.5)  # preloaded and waiting by now
        assert proc.poll() is None, err.read_text()
        fds = os.listdir(f"/proc/{proc.pid}/fd")
        assert not any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == "anon_inode:inotify"
                       for fd in fds)
        before = _cpu_seconds(proc.pid)
        time.sleep(1.0)
        assert _cpu_seconds(proc.pid) - before < 0.2  # a busy loop would be ~1 s
        staging = bundle.path / ".config.json.tmp"
        staging.write_text(config)
        renamed = time.monotonic()
        os.replace(staging, bundle.config_path)
        assert proc.wait(timeout=60) == 0, err.read_text()
        assert time.monotonic() - renamed < 5  # not the 30 s timeout
        state = subprocess.run([RUNTIME, "--root", str(root), "state", bundle.id],
                               capture_output=True, text=True, check=True).stdout
        assert json.loads(state)["status"] == "created"
    finally:
        proc.kill()
        subprocess.run([RUNTIME, "--root", str(root), "delete", "--force", bundle.id],
                       capture_output=True, timeout=60, check=False)


def test_without_a_bundle_directory_yet_it_polls(make_bundle, tmp_path):
    """No directory to watch at first: short polls find the config all the same."""
    bundle = make_bundle()
    config = bundle.config_path.read_text()
    moved = tmp_path / "bundle-later"
    os.rename(bundle.path, moved)
    (moved / "config.json").unlink()
    root = tmp_path / "state"
    err = tmp_path / "err"
    proc = _create(root, bundle.path, bundle.id, "30", err)
    try:
        time.sleep(0.3)
        assert proc.poll() is None, err.read_text()
        os.rename(moved, bundle.path)
        staging = bundle.path / ".config.json.tmp"
        staging.write_text(config)
        os.replace(staging, bundle.config_path)
        assert proc.wait(timeout=60) == 0, err.read_text()
    finally:
        proc.kill()
        subprocess.run([RUNTIME, "--root", str(root), "delete", "--force", bundle.id],
                       capture_output=True, timeout=60, check=False)


def test_gives_up_naming_the_file_without_a_bundle_directory(tmp_path):
    bundle = tmp_path / "no-such-bundle"
    root = tmp_path / "state"
    err = tmp_path / "err"
    proc = _create(root, bundle, "corral-test-no-bundle", "0.3", err)
    assert proc.wait(timeout=60) != 0
    assert f"{bundle}/config.json: not written within 0.3 s" in err.read_text()
