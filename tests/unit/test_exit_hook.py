"""conmon's exit command, first stage (engine/exit_hook.sh): it exits at once while the
foreground CLI that will clean up is alive, or when the cleanup is done, and runs the
real cleanup command otherwise. The state is written as the engine writes it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from corral.storage.records import write_json

HOOK = Path(__file__).resolve().parents[2] / "src" / "corral" / "engine" / "exit_hook.sh"


def _hook(state_file: Path, marker: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", str(HOOK), str(state_file), "--",
                           "/bin/sh", "-c", f"echo ran > {marker}"],
                          capture_output=True, timeout=30, check=False)


def _run(tmp_path: Path, state: dict) -> Path:
    write_json(tmp_path / "state.json", state, durable=False)
    marker = tmp_path / "ran"
    marker.unlink(missing_ok=True)
    assert _hook(tmp_path / "state.json", marker).returncode == 0
    return marker


def _engine_state(**changes) -> dict:
    from corral import records_light
    from corral.engine.engine import State

    return records_light.asdict(records_light.replace(State(), **changes))


def test_live_foreground_client_skips_the_cleanup(tmp_path):
    assert not _run(tmp_path, {"rm_client": os.getpid()}).exists()
    assert not _run(tmp_path, _engine_state(status="running", pid=12345,
                                            rm_client=os.getpid())).exists()


def test_no_client_or_a_dead_or_zombie_one_runs_the_cleanup(tmp_path):
    assert _run(tmp_path, {"rm_client": None}).exists()
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert _run(tmp_path, {"rm_client": dead.pid}).exists()
    zombie = subprocess.Popen(["true"])
    try:
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z":
            pass
        assert _run(tmp_path, _engine_state(status="running", pid=1,
                                            rm_client=zombie.pid)).exists()
    finally:
        zombie.wait()
    assert _run(tmp_path, {}).exists()


def test_finished_or_removed_containers_need_no_cleanup(tmp_path):
    # the foreground CLI cleaned up and exited before conmon ran the hook
    assert not _run(tmp_path, _engine_state(status="exited", exit_code=0)).exists()
    assert not _run(tmp_path, _engine_state(status="stopped")).exists()
    # ... but a container still recorded as running, or with networks left, needs it
    assert _run(tmp_path, _engine_state(status="running", pid=12345,
                                        pid_start="99")).exists()
    assert _run(tmp_path, _engine_state(status="exited", networks=[{"n": 1}])).exists()
    # keys that end in "pid" or strings that quote one are not the pid
    assert not _run(tmp_path, _engine_state(status="exited", conmon_pid=None,
                                            error='x "pid":1')).exists()
    # run --rm: the container (and its state file) is gone already
    marker = tmp_path / "ran"
    marker.unlink(missing_ok=True)
    assert _hook(tmp_path / "gone.json", marker).returncode == 0
    assert not marker.exists()


def test_usage_errors(tmp_path):
    r = subprocess.run(["/bin/sh", str(HOOK), str(tmp_path / "s.json"), "true"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and "usage" in r.stderr
