"""podman (through conmon) driving corral-runtime, with runc as the reference.

The flows of the issue: `podman --runtime <abs path> run --rm` in the
foreground (output and exit code come back), `-d` then `podman exec`, `-it`
with a real terminal (a pty driven from the test), `stop` (SIGTERM, then
SIGKILL after the timeout), `kill`, `rm -f`, and the errors conmon relays from
the runtime's stderr or its `--log` JSON file.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from .conftest import IMAGE, wait_for

pytestmark = pytest.mark.interop


def _inspect(podman, name: str, template: str) -> str:
    return podman("inspect", "--format", template, name, check=True).stdout.strip()


def _gone(podman, name: str) -> bool:
    result = podman("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}", check=True)
    return result.stdout.strip() == ""


class PtySession:
    """A command on a new pty (its controlling terminal), as a user's shell would run it."""

    def __init__(self, argv: list[str], rows: int = 24, cols: int = 80) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # noqa: PLW1509 - no threads
        os.close(slave)
        self.output = bytearray()
        self.eof = False

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: every slave fd is closed
            data = b""
        if data:
            self.output += data
        else:
            self.eof = True

    def expect(self, pattern: bytes, timeout: float = 20.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, bytes(self.output))
            if match:
                return match
            if self.eof or time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not seen on the terminal; got "
                                     f"{bytes(self.output)!r}")
            self._read(min(0.2, max(0.0, deadline - time.monotonic())))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while not self.eof and self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


def _drive_shell(session: PtySession) -> None:
    """The shell prints a prompt, runs typed input and exits with the typed status."""
    try:
        session.expect(rb"# ")
        session.send(b"tty; stty size; echo typed-$((40+2))\r")
        match = session.expect(rb"(/dev/pts/\d+)\r\n(\d+ \d+)\r\ntyped-42\r\n")
        assert match.group(2) == b"24 80", "the terminal size did not reach the container"
        session.send(b"exit 5\r")
        assert session.wait() == 5, bytes(session.output)
    finally:
        session.close()


def test_run_foreground_output_and_exit_code(podman):
    name = podman.new_name()
    result = podman("run", "--rm", "--network", "none", "--name", name, IMAGE,
                    "sh", "-c", "echo hello from $(hostname); echo to-stderr >&2; exit 3")
    assert result.returncode == 3, result.stderr
    assert "hello from" in result.stdout
    assert "to-stderr" in result.stderr
    assert wait_for(lambda: _gone(podman, name)), "--rm did not remove the container"


def test_run_pipes_stdin(podman):
    result = podman("run", "--rm", "-i", "--network", "none", "--name", podman.new_name(), IMAGE,
                    "sh", "-c", "cat; echo done", input="line one\nline two\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "line one\nline two\ndone\n"


def test_detached_then_exec(podman, sleeper):
    assert _inspect(podman, sleeper, "{{.State.Status}}") == "running"
    result = podman("exec", sleeper, "sh", "-c", "echo exec-out; echo exec-err >&2; exit 4")
    assert result.returncode == 4, result.stderr
    assert result.stdout == "exec-out\n"
    assert "exec-err" in result.stderr
    result = podman("exec", "-u", "1000", "-w", "/tmp", "-e", "GREETING=hi", sleeper,
                    "sh", "-c", "id -u; pwd; echo $GREETING", check=True)
    assert result.stdout.split() == ["1000", "/tmp", "hi"]
    podman("exec", "-d", sleeper, "sleep", "30", check=True)
    processes = podman("exec", sleeper, "ps", check=True).stdout
    assert re.search(r"^\s*1 .*sleep 1000", processes, re.MULTILINE), processes
    assert "sleep 30" in processes


def test_run_interactive_tty(podman):
    session = PtySession(podman.argv("run", "--rm", "-it", "--network", "none",
                                     "--name", podman.new_name(), IMAGE, "sh"))
    _drive_shell(session)


def test_exec_interactive_tty(podman, sleeper):
    _drive_shell(PtySession(podman.argv("exec", "-it", sleeper, "sh")))


def test_stop_sleep_container_escalates_to_sigkill(podman, sleeper):
    # `sleep` as PID 1 has no SIGTERM handler, so the kernel ignores SIGTERM:
    # podman must fall back to SIGKILL once the timeout is over.
    started = time.monotonic()
    podman("stop", "-t", "2", sleeper, check=True)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 10, f"stop -t 2 took {elapsed:.1f}s"
    assert _inspect(podman, sleeper, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"


def test_stop_delivers_sigterm(podman):
    name = podman.new_name()
    podman("run", "-d", "--network", "none", "--name", name, IMAGE, "sh", "-c",
           'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.1; done',
           check=True)
    assert wait_for(lambda: "ready" in podman("logs", name).stdout)
    started = time.monotonic()
    podman("stop", "-t", "20", name, check=True)
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"SIGTERM did not stop the container: stop took {elapsed:.1f}s"
    assert _inspect(podman, name, "{{.State.Status}} {{.State.ExitCode}}") == "exited 0"
    assert "got-term" in podman("logs", name).stdout


def test_kill(podman):
    name = podman.new_name()
    podman("run", "-d", "--network", "none", "--name", name, IMAGE, "sh", "-c",
           'trap "echo got-usr1" USR1; echo ready; while :; do sleep 0.1; done', check=True)
    assert wait_for(lambda: "ready" in podman("logs", name).stdout)
    podman("kill", "--signal", "USR1", name, check=True)
    assert wait_for(lambda: "got-usr1" in podman("logs", name).stdout), "USR1 not delivered"
    assert _inspect(podman, name, "{{.State.Status}}") == "running"
    podman("kill", name, check=True)  # SIGKILL
    assert podman("wait", name, check=True).stdout.strip() == "137"
    assert _inspect(podman, name, "{{.State.Status}}") == "exited"


def test_rm_force_running_container(podman, sleeper):
    container_id = _inspect(podman, sleeper, "{{.Id}}")
    pid = int(_inspect(podman, sleeper, "{{.State.Pid}}"))
    assert pid > 0 and os.path.exists(f"/proc/{pid}")
    podman("rm", "-f", "-t", "1", sleeper, check=True)
    assert _gone(podman, sleeper)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}")), "the container's init survived"
    # The runtime's own state is gone too (`delete --force` ran).
    state = subprocess.run([podman.runtime, "state", container_id], capture_output=True, text=True,
                           check=False)
    assert state.returncode != 0, state.stdout


def test_pause_unpause(podman, sleeper):
    podman("pause", sleeper, check=True)
    assert _inspect(podman, sleeper, "{{.State.Status}}") == "paused"
    podman("unpause", sleeper, check=True)
    assert _inspect(podman, sleeper, "{{.State.Status}}") == "running"
    assert podman("exec", sleeper, "true").returncode == 0


def test_join_another_containers_namespaces(podman, sleeper):
    result = podman("run", "--rm", "--name", podman.new_name(), "--network", f"container:{sleeper}",
                    "--pid", f"container:{sleeper}", "--ipc", f"container:{sleeper}", IMAGE,
                    "ps", check=True)
    assert re.search(r"^\s*1 .*sleep 1000", result.stdout, re.MULTILINE), result.stdout


def test_user_namespace_and_privileged(podman):
    result = podman("run", "--rm", "--network", "none", "--name", podman.new_name(),
                    "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", IMAGE,
                    "sh", "-c", "id -u; cat /proc/self/uid_map", check=True)
    assert result.stdout.split() == ["0", "0", "100000", "65536"]
    result = podman("run", "--rm", "--network", "none", "--name", podman.new_name(),
                    "--privileged", IMAGE, "ls", "/dev/null", check=True)
    assert result.stdout.strip() == "/dev/null"


@pytest.mark.parametrize("command", ["/nonexistent", "nosuchcommand"])
def test_missing_executable_is_reported(podman, sleeper, command):
    result = podman("run", "--rm", "--network", "none", "--name", podman.new_name(), IMAGE, command)
    # podman maps "no such file or directory"/"executable file not found" to 127.
    assert result.returncode == 127, result.stderr
    assert command in result.stderr
    result = podman("exec", sleeper, command)
    assert result.returncode == 127, result.stderr
    assert command in result.stderr


def test_json_log_errors(podman, tmp_path):
    """With the runtime's name in runtime_supports_json, conmon passes
    `--log-format=json --log FILE` and podman reports the "msg" of the error line."""
    runtime_name = os.path.basename(podman.runtime)
    wrapper_dir = tmp_path / "runtime"
    wrapper_dir.mkdir()
    argv_log = tmp_path / "argv.log"
    wrapper = wrapper_dir / runtime_name
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {argv_log}\nexec {podman.runtime} "$@"\n')
    wrapper.chmod(0o755)
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000","nproc=30000:30000"]\n'
                    f'[engine]\nruntime_supports_json = ["crun", "runc", "{runtime_name}"]\n')
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    client = type(podman)(str(wrapper), podman.base, podman.names, env)
    name = client.new_name()
    client("create", "--network", "none", "--name", name, IMAGE, "/nonexistent", check=True)
    result = client("start", name)
    assert result.returncode != 0
    assert "/nonexistent" in result.stderr
    create_line = next(line for line in argv_log.read_text().splitlines() if " create " in line)
    assert "--log-format=json" in create_line and "--log " in create_line, create_line
    log_file = Path(create_line.split("--log ", 1)[1].split()[0])
    records = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    errors = [r for r in records if r.get("level") == "error"]
    assert errors and "/nonexistent" in errors[-1]["msg"], records


def test_detached_rm_cleans_up_after_exit(podman):
    """conmon's exit command (`podman container cleanup --rm`) deletes the container."""
    name = podman.new_name()
    podman("run", "-d", "--rm", "--network", "none", "--name", name, IMAGE,
           "sh", "-c", "sleep 0.3; exit 3", check=True)
    assert wait_for(lambda: _gone(podman, name), timeout=20), "the exited container was kept"


def test_exec_pipes_stdin_and_reports_signals(podman, sleeper):
    result = podman("exec", "-i", sleeper, "cat", input="piped in\n")
    assert (result.returncode, result.stdout) == (0, "piped in\n"), result.stderr
    assert podman("exec", sleeper, "sh", "-c", "kill -9 $$").returncode == 137


def test_restart(podman):
    name = podman.new_name()
    podman("run", "-d", "--network", "none", "--name", name, IMAGE, "sh", "-c",
           'trap "exit 0" TERM; while :; do sleep 0.1; done', check=True)
    first = _inspect(podman, name, "{{.State.Pid}}")
    podman("restart", "-t", "5", name, check=True)
    assert _inspect(podman, name, "{{.State.Status}}") == "running"
    assert _inspect(podman, name, "{{.State.Pid}}") != first
    assert podman("exec", name, "true").returncode == 0


def test_podman_cni_network_and_published_port(podman):
    """podman makes the netns and runs the CNI plugins; the runtime joins that netns by
    path: the container's httpd answers on a 127.0.0.1 port published by podman."""
    import socket
    import urllib.request
    import uuid

    network = f"corral-test-{uuid.uuid4().hex[:8]}"
    podman("network", "create", "--subnet", "10.99.240.0/24", network, check=True)
    bridge = json.loads(podman("network", "inspect", network, check=True).stdout
                        )[0]["network_interface"]  # podman 4.3 names it cni-podmanN
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        name = podman.new_name()
        podman("run", "-d", "--network", network, "-p", f"127.0.0.1:{port}:80", "--name",
               name, IMAGE, "sh", "-c",
               "mkdir /www && echo via-podman > /www/index.html && httpd -f -p 80 -h /www",
               check=True)
        body = wait_for(lambda: _get(f"http://127.0.0.1:{port}/", urllib.request), 20)
        assert body == b"via-podman\n"
        podman("rm", "-f", name, check=True)
    finally:
        podman("network", "rm", "-f", network)
        if os.path.exists(f"/sys/class/net/{bridge}"):  # podman leaves CNI bridges behind
            subprocess.run(["ip", "link", "delete", bridge], check=False)
        leases = Path("/var/lib/cni/networks") / network  # and host-local's lock files
        if leases.is_dir() and all(p.name == "lock" or p.name.startswith("last_reserved")
                                   for p in leases.iterdir()):
            for p in leases.iterdir():
                p.unlink()
            leases.rmdir()
    assert not os.path.exists(f"/sys/class/net/{bridge}")


def _get(url: str, request) -> bytes | None:
    try:
        with request.urlopen(url, timeout=2) as response:
            return response.read()
    except OSError:
        return None
