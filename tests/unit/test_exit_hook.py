"""conmon's exit command, first stage: it exits at once while the foreground CLI that
will clean up is alive, and runs the real cleanup command otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HOOK = Path(__file__).resolve().parents[2] / "src" / "corral" / "engine" / "exit_hook.py"


def _run(tmp_path: Path, state: dict) -> Path:
    (tmp_path / "state.json").write_text(json.dumps(state))
    marker = tmp_path / "ran"
    subprocess.run([sys.executable, "-I", "-S", str(HOOK), str(tmp_path / "state.json"), "--",
                    "/bin/sh", "-c", f"echo ran > {marker}"], check=True, timeout=30)
    return marker


def test_live_foreground_client_skips_the_cleanup(tmp_path):
    assert not _run(tmp_path, {"rm_client": os.getpid()}).exists()


def test_no_client_or_a_dead_one_runs_the_cleanup(tmp_path):
    assert _run(tmp_path, {"rm_client": None}).exists()
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert _run(tmp_path, {"rm_client": dead.pid}).exists()
    (tmp_path / "state.json").unlink()
    assert _run(tmp_path, {}).exists()


def test_finished_or_removed_containers_need_no_cleanup(tmp_path):
    # the foreground CLI cleaned up and exited before conmon ran the hook
    assert not _run(tmp_path, {"rm_client": None, "status": "exited", "pid": None,
                               "networks": []}).exists()
    # ... but a container still recorded as running, or with networks left, needs it
    assert _run(tmp_path, {"status": "running", "pid": 12345}).exists()
    (tmp_path / "ran").unlink()
    assert _run(tmp_path, {"status": "exited", "pid": None, "networks": [{"n": 1}]}).exists()
    # run --rm: the container (and its state file) is gone already
    marker = tmp_path / "ran"
    marker.unlink()
    subprocess.run([sys.executable, "-I", "-S", str(HOOK), str(tmp_path / "gone.json"), "--",
                    "/bin/sh", "-c", f"echo ran > {marker}"], check=True, timeout=30)
    assert not marker.exists()
