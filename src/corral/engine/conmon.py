"""The per-container monitor: conmon (what podman and CRI-O use), driven like podman's
libpod/oci_conmon_linux.go.

`spawn()` runs `conmon --api-version 1 ...` (`Launch.wait()` for the outcome), which double-forks (its first process
exits at once), runs `<runtime> create`, reports the container pid — or the create
error — on the sync pipe (`_OCI_SYNCPIPE`: `{"data": pid}` / `{"data": -1, "message":
...}`), then keeps the container's stdio: the k8s-file log, the attach socket
(`<socket-dir>/<id>/attach`, a link to the bundle) and the `ctl`/`winsz` fifos in the
bundle. When the container exits it writes `<exit-dir>/<id>` (the exit code) and runs
the exit command (`corral container cleanup ID`).

The attach socket is SOCK_SEQPACKET: each read is one byte naming the stream (2 stdout,
3 stderr) and the data; writes go to the container's stdin; shutdown(SHUT_WR) closes it.
`resize()` writes `1 HEIGHT WIDTH` to `ctl`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from corral.errors import NotFound, SystemFailure
from corral.programs import which

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

STDIN, STDOUT, STDERR = 1, 2, 3


class ConmonError(SystemFailure):
    pass


class CreateFailed(SystemFailure):
    """The runtime's create failed (message from the runtime)."""


def conmon_path() -> str:
    found = which("conmon") or next(
        (p for p in ("/usr/bin/conmon", "/usr/libexec/podman/conmon", "/usr/local/bin/conmon")
         if os.access(p, os.X_OK)), None)
    if not found:
        raise NotFound("conmon not found (apt-get install conmon)")
    return found


def socket_dir(store_root: Path) -> Path:
    """Short (sun_path is 108 bytes): /run/corral/s-<hash of the store root>."""
    from corral.oci.digest import sha256_hex

    digest = sha256_hex(str(store_root.resolve()).encode())[:12]
    path = Path("/run/corral") / f"s-{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Launch:
    """conmon started; `wait()` reads its sync pipe: the container's pid once the runtime's
    `create` is done, or the runtime's error."""

    def __init__(self, proc: Any, sync_fd: int) -> None:
        self._proc = proc  # a _Started or a subprocess.Popen
        self._sync_fd = sync_fd

    def wait(self) -> int:
        data = b""
        try:
            _, err = self._proc.communicate(timeout=120)  # conmon's first process: daemonizes
            if self._proc.returncode != 0:
                raise ConmonError(f"conmon failed: {err.decode(errors='replace').strip()}")
            while not data.endswith(b"\n"):
                chunk = os.read(self._sync_fd, 65536)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(self._sync_fd)
        try:
            message = json.loads(data.splitlines()[0]) if data.strip() else {}
        except ValueError:
            message = {}
        pid = int(message.get("data", -1)) if isinstance(message, dict) else -1
        if pid <= 0:
            text = message.get("message") if isinstance(message, dict) else None
            raise CreateFailed(_clean(text or data.decode(errors="replace") or
                                      "the runtime's create failed (no message from conmon)"))
        return pid


class _Started:
    """A process `_start` forked: what Launch needs of a subprocess.Popen."""

    def __init__(self, pid: int, stderr_fd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._stderr_fd = stderr_fd

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Its stderr until EOF, then its exit (conmon's first process exits as soon as it
        has daemonized, so no timeout is enforced)."""
        chunks = []
        try:
            while chunk := os.read(self._stderr_fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(self._stderr_fd)
        status = os.waitpid(self.pid, 0)[1]
        self.returncode = os.waitstatus_to_exitcode(status)
        return b"", b"".join(chunks)


def _start(argv: list[str], env: dict[str, str], cwd: str, keep_fd: int) -> _Started:
    """fork and exec `argv` in `cwd`: stdin and stdout /dev/null, stderr a pipe,
    `keep_fd` inherited. What subprocess.Popen does, without its import (~3 ms of
    threading, selectors and locale on `run`'s critical path). Only with no other thread
    running (forked.single_threaded): the child runs Python code until exec."""
    err_r, err_w = os.pipe()
    fail_r, fail_w = os.pipe()  # close-on-exec: EOF at exec, or the errno of a failure
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            import _signal

            for number in (13, 25):  # as Popen's restore_signals: SIGPIPE, SIGXFSZ
                _signal.signal(number, _signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(err_w, 2)
            os.set_inheritable(keep_fd, True)
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        except OSError as exc:
            os.write(fail_w, str(exc.errno or 0).encode())
        finally:
            os._exit(127)
    os.close(err_w)
    os.close(fail_w)
    try:
        failure = os.read(fail_r, 32)
    finally:
        os.close(fail_r)
    if failure:
        os.close(err_r)
        os.waitpid(pid, 0)
        number = int(failure)
        raise OSError(number, os.strerror(number), argv[0])
    return _Started(pid, err_r)


def spawn(*, container_id: str, name: str, runtime: str, runtime_root: str, bundle: Path,
          log_path: Path, exit_dir: Path, sock_dir: Path, exit_command: Sequence[str],
          tty: bool, stdin: bool, log_level: str = "error",
          runtime_env: dict[str, str] | None = None) -> Launch:
    """Start conmon, which runs `runtime create` at once (`runtime_env`: extra environment
    for the runtime, which inherits conmon's). `Launch.wait()` for the outcome."""
    from corral.engine.forked import single_threaded

    for stale in ("attach", "ctl", "winsz", "pidfile", "conmon.pid"):
        try:
            os.unlink(bundle / stale)
        except FileNotFoundError:
            pass
    remove_socket_link(sock_dir, container_id)
    argv = [conmon_path(), "--api-version", "1", "-c", container_id, "-u", container_id,
            "-n", name, "-r", runtime, "-b", str(bundle), "-p", str(bundle / "pidfile"),
            "-P", str(bundle / "conmon.pid"), "-l", f"k8s-file:{log_path}",
            "--exit-dir", str(exit_dir), "--socket-dir-path", str(sock_dir),
            "--runtime-arg", "--root", "--runtime-arg", runtime_root,
            "--log-level", log_level]
    if exit_command:
        argv += ["--exit-command", exit_command[0]]
        for arg in exit_command[1:]:
            argv += ["--exit-command-arg", arg]
    if tty:
        argv.append("-t")
    if stdin:
        argv.append("-i")
    r, w = os.pipe()
    try:
        env = dict(os.environ, **(runtime_env or {}), _OCI_SYNCPIPE=str(w))
        # cwd: conmon writes the `oom` file (an OOM kill seen) in its working directory
        if single_threaded():
            proc: Any = _start(argv, env, str(bundle), w)
        else:
            import subprocess

            proc = subprocess.Popen(argv, pass_fds=(w,), env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    cwd=str(bundle))
    except OSError as exc:
        os.close(r)
        raise ConmonError(f"cannot run conmon: {exc}") from exc
    finally:
        os.close(w)
    return Launch(proc, r)


def exits_dir(store_root: Path) -> Path:
    """Where conmon writes each container's exit code (`<dir>/<id>`) for the engine."""
    return store_root / "engine" / "exits"


def exit_command(store_root: Path, bundle: Path, container_id: str) -> list[str]:
    """conmon's exit command for an engine's container: `engine/exit_hook.sh` (which
    returns at once when a foreground CLI cleans up itself), then
    `corral container cleanup ID`."""
    hook = Path(__file__).with_name("exit_hook.sh")
    return ["/bin/sh", str(hook), str(bundle / "state.json"), "--",
            sys.executable, "-m", "corral.cli.main", "--root", str(store_root),
            "container", "cleanup", container_id]


def spawn_monitor(store_root: Path, container_id: str, name: str, runtime: str,
                  bundle: Path, log_path: Path, *, tty: bool, stdin: bool,
                  await_config: bool = False, monitor_cleanup: bool = True) -> Launch:
    """`spawn` as the engine runs it for a container of the store at `store_root`
    (`await_config`: the runtime waits for config.json, see corral.runtime;
    `monitor_cleanup=False`: no exit command). Shared by `Engine` and
    `corral.cli.prelaunch`, which must launch exactly alike."""
    from corral.engine.oci import runtime_root
    from corral.runtime import AWAIT_CONFIG_ENV

    return spawn(
        container_id=container_id, name=name, runtime=runtime,
        runtime_root=runtime_root(store_root, runtime), bundle=bundle, log_path=log_path,
        exit_dir=exits_dir(store_root), sock_dir=socket_dir(store_root),
        exit_command=exit_command(store_root, bundle, container_id)
        if monitor_cleanup else [],
        tty=tty, stdin=stdin, runtime_env={AWAIT_CONFIG_ENV: "60"} if await_config else None)


def abandon(launch: Launch, store_root: Path, bundle: Path, runtime: str,
            container_id: str) -> None:
    """Undo a launch whose `start` will not happen: a runtime still waiting for
    config.json gets one it refuses, and exits; a container it created is deleted; the
    socket link goes."""
    from corral.engine.oci import OCIRuntime, runtime_root
    from corral.storage.records import write_json

    if not (bundle / "config.json").exists():
        try:
            write_json(bundle / "config.json", {"ociVersion": "1.0.2"}, durable=False)
        except OSError:
            pass
    try:
        launch.wait()
    except Exception:  # noqa: BLE001, S110 - it failed, as it was meant to
        pass
    OCIRuntime(runtime, runtime_root(store_root, runtime)).delete(container_id, force=True)
    remove_socket_link(socket_dir(store_root), container_id)


def _clean(text: str) -> str:
    """runc's `time=... level=error msg="..."` -> the message."""
    import re

    lines = []
    for line in text.strip().splitlines():
        m = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
        lines.append(m.group(1).replace('\\"', '"') if m else line)
    return "; ".join(x for x in lines if x)


def remove_socket_link(sock_dir: Path, container_id: str) -> None:
    """conmon makes `<socket-dir>/<id>` a symlink to the bundle (where its attach socket
    is); rmtree refuses symlinks, so this unlinks it (or removes a directory there)."""
    path = sock_dir / container_id
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def attach_socket(sock_dir: Path, container_id: str) -> socket.socket:
    import socket

    path = sock_dir / container_id / "attach"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise ConmonError(f"cannot attach to {container_id[:12]}: {exc} (is its monitor "
                          "running?)") from exc
    return sock


def resize(bundle: Path, height: int, width: int) -> None:
    try:
        fd = os.open(bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, f"1 {height} {width}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "STDERR",
    "STDIN",
    "STDOUT",
    "ConmonError",
    "CreateFailed",
    "Launch",
    "abandon",
    "attach_socket",
    "conmon_path",
    "exit_command",
    "exits_dir",
    "resize",
    "socket_dir",
    "spawn",
    "spawn_monitor",
]
