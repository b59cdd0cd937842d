"""The engine through the `corral` CLI on real containers (busybox image, temp store).

Each test gets its own store root; teardown removes every container (rm -f), kills any
conmon left for that root, unmounts and deletes the root.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from tests.support.stores import remove_root

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")

pytestmark = pytest.mark.skipif(shutil.which("conmon") is None, reason="needs conmon")


def _name() -> str:
    return f"corral-test-{uuid.uuid4().hex[:8]}"


class Corral:
    def __init__(self, root: Path) -> None:
        self.root = root

    def argv(self, *args: str) -> list[str]:
        return [CORRAL, "--root", str(self.root), *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 60,
                 input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(self.argv(*args), capture_output=True, text=True,
                                timeout=timeout, input=input,
                                stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} -> {result.returncode}: "
                                 f"{result.stderr}")
        return result

    def inspect(self, ref: str) -> dict:
        return json.loads(self("container", "inspect", ref).stdout)[0]


def _conmons(root: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"conmon") and any(str(root).encode() in a for a in cmd):
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def image_root():
    root = Path(tempfile.mkdtemp(prefix="corral-test-engine-img-"))
    subprocess.run([CORRAL, "--root", str(root), "image", "busybox"], check=True,
                   capture_output=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def corral(image_root):
    root = Path(tempfile.mkdtemp(prefix="corral-test-engine-"))
    shutil.rmtree(root)
    shutil.copytree(image_root, root, symlinks=True)
    c = Corral(root)
    yield c
    subprocess.run(c.argv("rm", "-af"), capture_output=True, timeout=120)
    for pid in _conmons(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    remove_root(root)


def _until(pred, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached")


def test_run_foreground_output_and_exit_code(corral):
    r = corral("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
               check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert corral("ps", "-aq").stdout == ""


def test_removal_leaves_no_monitor_socket_link(corral):
    """conmon links `<socket dir>/<id>` to the bundle; removal (--rm, rm -f) unlinks it."""
    from corral.engine.conmon import socket_dir

    links = socket_dir(corral.root)
    before = set(os.listdir(links))
    corral("run", "--rm", "busybox", "true")
    cid = corral("run", "-d", "busybox", "sleep", "300").stdout.strip()
    assert (links / cid).is_symlink()
    corral("rm", "-f", cid)
    assert set(os.listdir(links)) == before


def test_run_stdin(corral):
    r = corral("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done", input="abc\n")
    assert r.stdout == "abc\ndone\n"


def test_create_start_attach_wait_inspect(corral):
    name = _name()
    cid = corral("create", "--name", name, "--label", "a=b", "busybox",
                 "sh", "-c", "echo hi; exit 5").stdout.strip()
    assert corral.inspect(name)["State"]["Status"] == "created"
    r = corral("start", "-a", name, check=False)
    assert (r.returncode, r.stdout) == (5, "hi\n")
    info = corral.inspect(cid[:12])
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 5
    assert info["Config"]["Labels"] == {"a": "b"} and info["Name"] == name
    assert corral("wait", name).stdout.strip() == "5"
    out = corral("ps", "-a", "--filter", "label=a=b", "--format", "{{.Name}} {{.State}}").stdout
    assert out.strip() == f"{name} exited"
    assert json.loads(corral("ps", "-a", "--format", "json").stdout)[0]["Id"] == cid
    assert corral("ps", "-a", "--filter", f"name={name}x").stdout.count("\n") == 1  # header


def test_detached_logs_survive_cli_and_k8s_format(corral):
    name = _name()
    corral("run", "-d", "--name", name, "busybox", "sh", "-c",
           "echo one; echo two >&2; sleep 0.3; echo three; sleep 30")
    _until(lambda: "three" in corral("logs", name).stdout)
    r = corral("logs", name)
    assert r.stdout == "one\nthree\n" and r.stderr == "two\n"
    assert corral("logs", "--tail", "1", name).stdout == "three\n"
    assert corral("logs", "-t", name).stdout.split()[0].endswith("Z") or \
        "+00:00" in corral("logs", "-t", name).stdout.split()[0]
    log = Path(corral.inspect(name)["LogPath"]).read_text().splitlines()
    for line in log:
        ts, stream, tag, _ = line.split(" ", 3)
        assert stream in ("stdout", "stderr") and tag in ("F", "P") and "T" in ts
    assert corral("logs", "--since", "1h", name).stdout == "one\nthree\n"
    assert corral("logs", "--since", "2099-01-01T00:00:00Z", name).stdout == ""
    follower = subprocess.Popen(corral.argv("logs", "-f", name), stdout=subprocess.PIPE,
                                text=True)
    time.sleep(0.5)
    corral("stop", "-t", "1", name)
    out, _ = follower.communicate(timeout=20)
    assert out == "one\nthree\n"


def test_stop_kill_restart_pause_rm(corral):
    name = _name()
    corral("run", "-d", "--name", name, "--stop-signal", "USR1", "busybox", "sh", "-c",
           "trap 'exit 7' USR1; while true; do sleep 0.1; done")
    assert corral.inspect(name)["State"]["Status"] == "running"
    corral("pause", name)
    assert corral.inspect(name)["State"]["Status"] == "paused"
    corral("unpause", name)
    assert corral.inspect(name)["State"]["Status"] == "running"
    r = corral("rm", name, check=False)
    assert r.returncode == 2 and "running" in r.stderr
    corral("stop", name)
    info = corral.inspect(name)
    assert (info["State"]["Status"], info["State"]["ExitCode"]) == ("exited", 7)
    corral("restart", name)
    assert corral.inspect(name)["State"]["Status"] == "running"
    corral("kill", "-s", "TERM", name)  # sh as pid 1 ignores TERM without a trap
    time.sleep(0.3)
    assert corral.inspect(name)["State"]["Status"] == "running"
    corral("kill", name)
    _until(lambda: corral.inspect(name)["State"]["Status"] == "exited")
    assert corral.inspect(name)["State"]["ExitCode"] == 137
    corral("start", name)
    corral("rm", "-f", name)
    assert corral("ps", "-aq").stdout == ""
    assert _until(lambda: not _conmons(corral.root))
    assert not [x for x in Path("/proc/self/mountinfo").read_text().splitlines()
                if str(corral.root) in x]


def test_exec(corral):
    name = _name()
    corral("run", "-d", "--name", name, "busybox", "sleep", "60")
    r = corral("exec", "-e", "X=1", "-w", "/tmp", "-u", "1000", name, "sh", "-c",
               "echo $X $(pwd) $(id -u); exit 9", check=False)
    assert (r.returncode, r.stdout) == (9, "1 /tmp 1000\n")
    assert corral("exec", "-i", name, "cat", input="piped").stdout == "piped"
    corral("exec", "-d", name, "sh", "-c", "echo d > /tmp/d")
    _until(lambda: corral("exec", name, "cat", "/tmp/d").stdout == "d\n")
    assert corral("exec", name, "nope", check=False).returncode == 127
    stopped = _name()
    corral("create", "--name", stopped, "busybox", "true")
    assert corral("exec", stopped, "true", check=False).returncode == 125


def _read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    assert needle in data, data
    return data


def _set_size(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.mark.parametrize("network", [[], ["--network", "none"]],
                         ids=["default-network", "prelaunched"])
def test_tty_session_resize_and_detach(corral, network):
    """Through a pty: type, read, resize, detach; with --network none the monitor is
    prelaunched with -t before the command line is parsed (corral.cli.prelaunch)."""
    name = _name()
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(CORRAL, corral.argv("run", "-it", *network, "--name", name, "busybox",
                                     "sh"))
    try:
        _set_size(fd, 30, 100)
        _read_until(fd, b"# ")
        os.write(fd, b"echo $((6*7)); stty size\r")
        out = _read_until(fd, b"42")
        if b"# " not in out.partition(b"42")[2]:  # the prompt may come in the same read
            _read_until(fd, b"# ")
        _set_size(fd, 40, 120)
        os.kill(pid, signal.SIGWINCH)
        time.sleep(0.3)
        os.write(fd, b"stty size\r")
        _read_until(fd, b"40 120")
        os.write(fd, b"\x10\x11")  # ctrl-p ctrl-q
        _read_until(fd, b"Detached")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert corral.inspect(name)["State"]["Status"] == "running"
        assert b"42" in out
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    # exec -it through a pty too
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(CORRAL, corral.argv("exec", "-it", name, "sh", "-c",
                                     "stty size; read x; exit $x"))
    _set_size(fd, 22, 77)
    _read_until(fd, b"22 77")
    os.write(fd, b"3\r")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 3
    corral("rm", "-f", name)


def test_restart_policies(corral):
    name = _name()
    corral("run", "-d", "--name", name, "--restart", "on-failure:2", "busybox", "sh", "-c",
           "echo try; exit 1")
    _until(lambda: corral("logs", name).stdout.count("try") == 3 and
           corral.inspect(name)["State"]["Status"] == "exited", timeout=20)
    time.sleep(1)
    info = corral.inspect(name)
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 1
    assert corral("logs", name).stdout.count("try") == 3
    always = _name()
    corral("run", "-d", "--name", always, "--restart", "always", "busybox", "sleep", "60")
    first = corral.inspect(always)["State"]["Pid"]
    os.kill(first, signal.SIGKILL)
    _until(lambda: corral.inspect(always)["State"]["Pid"] not in (0, first) and
           corral.inspect(always)["State"]["Status"] == "running", timeout=20)
    corral("kill", always)
    _until(lambda: corral.inspect(always)["RestartCount"] == 2 and
           corral.inspect(always)["State"]["Status"] == "running", timeout=20)
    corral("stop", "-t", "1", always)  # a stop is not restarted
    time.sleep(1)
    assert corral.inspect(always)["State"]["Status"] == "exited"


def test_killed_conmon_recovered(corral):
    name = _name()
    corral("run", "-d", "--name", name, "busybox", "sleep", "60")
    info = corral.inspect(name)
    os.kill(info["State"]["ConmonPid"], signal.SIGKILL)
    time.sleep(0.2)
    assert corral.inspect(name)["State"]["Status"] == "running"  # the truth: still running
    os.kill(info["State"]["Pid"], signal.SIGKILL)
    _until(lambda: corral.inspect(name)["State"]["Status"] == "stopped")
    assert "Stopped" in corral("ps", "-a").stdout
    corral("start", name)
    assert corral.inspect(name)["State"]["Status"] == "running"
    corral("stop", "-t", "1", name)
    assert corral.inspect(name)["State"]["Status"] == "exited"


def test_bad_input_leaves_nothing(corral):
    before = sorted(os.listdir(corral.root / "storage" / "containers"))
    assert corral("run", "--rm", "nosuchimage", "true", check=False).returncode == 125
    assert corral("run", "busybox", "nonexistent-cmd", check=False).returncode == 127
    assert corral("run", "busybox", "/etc/passwd", check=False).returncode == 126
    assert corral("run", "--bogus-flag", "busybox", check=False).returncode == 125
    assert corral("run", "--restart", "sometimes", "busybox", "true",
                  check=False).returncode == 125
    assert corral("run", "--runtime", "no-such-runtime", "busybox", "true",
                  check=False).returncode == 125
    assert corral("run", "--name", "bad/name", "busybox", "true", check=False).returncode == 125
    assert sorted(os.listdir(corral.root / "storage" / "containers")) == before
    assert corral("ps", "-aq").stdout == ""
    name = _name()
    corral("create", "--name", name, "busybox", "true")
    r = corral("create", "--name", name, "busybox", "true", check=False)
    assert r.returncode == 125 and "already in use" in r.stderr
    assert corral("ps", "-aq").stdout.count("\n") == 1
    assert corral("stop", "nosuch", check=False).returncode == 125
    assert corral("rm", "nosuch", check=False).returncode == 1
    assert not _conmons(corral.root)


@pytest.mark.skipif(shutil.which("runc") is None and not os.path.exists("/usr/sbin/runc"),
                    reason="needs runc")
def test_runtime_runc(corral):
    name = _name()
    r = corral("run", "--rm", "--runtime", "runc", "busybox", "sh", "-c", "echo via runc",
               check=False)
    assert (r.returncode, r.stdout) == (0, "via runc\n"), r.stderr
    corral("run", "-d", "--name", name, "--runtime", "runc", "busybox", "sleep", "30")
    assert corral.inspect(name)["OCIRuntime"] == "runc"
    assert corral("exec", name, "echo", "x").stdout == "x\n"
    corral("rm", "-f", name)


def test_python_api(corral):
    import sys

    code = f"""
import corral
c = corral.run("busybox", ["sh", "-c", "echo hi; echo there"], detach=True,
               root={str(corral.root)!r})
lines = [l.text for l in c.logs(follow=True)]
print(lines, c.wait(), c.status)
c.remove()
"""
    r = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", code],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "['hi', 'there'] 0 exited", r.stderr
    assert "corral.engine.engine" not in subprocess.run(
        [sys.executable, "-c", "import corral, sys; print(list(sys.modules))"],
        capture_output=True, text=True, cwd=str(REPO / "src")).stdout


def _runtime_entries(root: Path) -> set[str]:
    path = root / "runtime"
    return {e for e in os.listdir(path) if not e.startswith(".")} if path.is_dir() else set()


def _container_cgroups(container_id: str) -> list[str]:
    """Directories named after the container in any cgroup hierarchy (v1 and v2)."""
    found = []
    for top in Path("/sys/fs/cgroup").iterdir():
        found += [str(p) for p in top.rglob(f"*{container_id}*") if p.is_dir()]
    return found


def test_run_rm_finishes_removal_in_background(corral):
    """`run --rm` returns once the record and name are gone; the runtime's state, the
    cgroups and the directory set aside go right after, in the background."""
    r = corral("run", "--rm", "--name", "corral-test-bg", "busybox", "sh", "-c",
               "cat /proc/self/cgroup | tail -1")
    cid_part = r.stdout.strip().rsplit("/", 1)[-1]
    assert corral("ps", "-aq").stdout == ""
    corral("run", "--rm", "--name", "corral-test-bg", "busybox", "true")  # the name is free
    containers = corral.root / "storage" / "containers"
    _until(lambda: not _runtime_entries(corral.root)
           and not [e for e in os.listdir(containers) if e.startswith(".removing-")])
    if len(cid_part) >= 12:
        _until(lambda: not _container_cgroups(cid_part[:12]))


def test_container_prune_sweeps_orphaned_runtime_state(corral, make_bundle):
    """A killed finisher leaves runtime state (and cgroups) the store no longer knows:
    `container prune` deletes them; state of recorded containers stays."""
    kept = corral("run", "-d", "busybox", "sleep", "300").stdout.strip()
    orphan = uuid.uuid4().hex + uuid.uuid4().hex  # an engine-style id with no record
    bundle = make_bundle()
    runtime = str(REPO / ".venv" / "bin" / "corral-runtime")
    rt_root = str(corral.root / "runtime")
    subprocess.run([runtime, "--root", rt_root, "create", "--bundle", str(bundle.path),
                    orphan], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    try:
        assert orphan in _runtime_entries(corral.root)
        corral("container", "prune")
        assert orphan not in _runtime_entries(corral.root)
        assert kept in _runtime_entries(corral.root)
        assert corral("ps", "-q").stdout.strip() == kept[:12]
    finally:
        subprocess.run([runtime, "--root", rt_root, "delete", "--force", orphan],
                       capture_output=True, timeout=60, check=False)


def test_run_failing_after_early_monitor_start_leaves_nothing(corral):
    """`run --network none` starts conmon and the runtime's create while the bundle is
    still being written; an error after that (a user the image lacks) stops them and
    leaves no container, runtime state, monitor, socket link or directory."""
    from corral.engine.conmon import socket_dir

    links = socket_dir(corral.root)
    before = set(os.listdir(links))
    r = corral("run", "--rm", "--network", "none", "--user", "nosuchuser", "busybox",
               "true", check=False)
    assert r.returncode == 125
    assert "nosuchuser" in r.stderr
    assert corral("ps", "-aq").stdout == ""
    containers = corral.root / "storage" / "containers"
    _until(lambda: not _runtime_entries(corral.root) and not os.listdir(containers)
           and not _conmons(corral.root))
    assert set(os.listdir(links)) == before
    r = corral("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo ok; exit 4",
               check=False)
    assert (r.returncode, r.stdout) == (4, "ok\n")


def test_run_prelaunches_its_monitor_before_the_record(corral):
    """`run --network none` starts conmon before parsing (corral.cli.prelaunch): the
    monitor was given the id's short form as its name, as the name was not chosen yet."""
    corral("run", "--rm", "--network", "none", "busybox", "true")  # engine/exits exists
    cid = corral("run", "-d", "--network", "none", "busybox", "sleep", "60").stdout.strip()
    cmd = Path(f"/proc/{corral.inspect(cid)['State']['ConmonPid']}/cmdline").read_bytes()
    args = cmd.decode().split("\0")
    assert args[args.index("-n") + 1] == cid[:12]
    assert args[args.index("-c") + 1] == cid
    assert not (corral.root / "storage" / "containers" / cid / ".reserved-by").exists()
    r = corral("run", "--rm", "-i", "--network", "none", "busybox", "cat", input="piped\n")
    assert r.stdout == "piped\n"


@pytest.mark.parametrize("args, message", [
    (["--network", "none", "nosuchimage", "true"], "nosuchimage"),
    (["--network", "none", "--stop-timeout", "soon", "busybox", "true"], "soon"),
    (["--network", "none", "--rm", "--restart", "always", "busybox", "true"], "conflict"),
    (["--network", "none", "--name", "taken", "busybox", "true"], "taken"),
])
def test_run_failing_before_the_record_undoes_the_prelaunch(corral, args, message):
    """A `run` whose monitor was prelaunched, failing before its record exists (a bad
    flag, an unknown image, a name in use), stops conmon and the waiting runtime and
    leaves no directory, runtime state or socket link."""
    from corral.engine.conmon import socket_dir

    corral("create", "--name", "taken", "--network", "none", "busybox", "true")
    containers = corral.root / "storage" / "containers"
    before = set(os.listdir(containers))
    links = socket_dir(corral.root)
    links_before = set(os.listdir(links))
    r = corral("run", *args, check=False)
    assert r.returncode == 125, r.stderr
    assert message in r.stderr
    assert set(os.listdir(containers)) == before
    _until(lambda: not _runtime_entries(corral.root) and not _conmons(corral.root))
    assert set(os.listdir(links)) == links_before
    assert corral("ps", "-aq").stdout.split() == [cid[:12] for cid in before]


def test_run_starts_its_monitor_without_subprocess(corral):
    """`run`'s critical path forks and execs conmon itself (engine/conmon._start): the
    subprocess module (~3 ms to import: threading, selectors, locale) is not loaded."""
    corral("run", "--rm", "--network", "none", "busybox", "true")
    code = ("import sys\n"
            f"sys.path[0:0] = [{str(REPO / 'src')!r}]\n"
            "from corral.cli.main import main\n"
            f"code = main(['--root', {str(corral.root)!r}, 'run', '--rm', '--network', "
            "'none', 'busybox', 'sh', '-c', 'exit 7'])\n"
            "print(code, 'subprocess' in sys.modules, flush=True)\n")
    python = str(REPO / ".venv" / "bin" / "python3")
    r = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True,
                       timeout=60, check=True)
    assert r.stdout.split() == ["7", "False"], r.stderr


def _processes_naming(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_a_run_killed_after_its_prelaunch_is_swept(corral):
    """A `run` killed between its prelaunch and its record leaves a reserved directory
    (swept by the next command once its reserver is dead) and a monitor waiting for a
    config that never comes; once that is gone, `container prune` removes its socket
    link."""
    from corral.engine.conmon import socket_dir

    corral("run", "--rm", "--network", "none", "busybox", "true")  # engine/exits exists
    code = ("import os, sys\n"
            f"sys.path[0:0] = [{str(REPO / 'src')!r}]\n"
            "from corral.cli import prelaunch\n"
            f"prelaunch.begin(['--root', {str(corral.root)!r}, 'run', '--network', 'none', "
            "'busybox', 'true'])\n"
            "print(prelaunch.pending().container_id, flush=True)\n"
            "os._exit(0)  # as if killed: nothing undone\n")
    python = str(REPO / ".venv" / "bin" / "python3")
    cid = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    reserved = corral.root / "storage" / "containers" / cid
    assert (reserved / ".reserved-by").exists()
    corral("ps", "-a")  # any command's store repair
    assert not reserved.exists()
    for pid in _processes_naming(cid):  # the monitor and its waiting runtime
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _until(lambda: not _processes_naming(cid))
    assert os.path.lexists(socket_dir(corral.root) / cid)
    corral("container", "prune")
    assert not os.path.lexists(socket_dir(corral.root) / cid)
    assert cid not in _runtime_entries(corral.root)


def test_a_bridge_container_between_create_and_start_keeps_its_netns(corral):
    """`run` on a bridge network makes the netns in create (so that the runtime can be
    launched then) and holds the container's lock until start: another process starting
    a bridge container meanwhile (its reconcile tears down networks of containers that
    are neither running nor busy) leaves that netns alone, and the container gets its
    address."""
    corral("run", "--rm", "busybox", "true")  # the default network exists
    code = f"""
import subprocess, sys
sys.path[0:0] = [{str(REPO / 'src')!r}]
from pathlib import Path
from corral.engine.config import ContainerConfig
from corral.engine.engine import Engine
from corral.storage.records import is_locked
root = Path({str(corral.root)!r})
engine = Engine(root=root)
c = engine.create(ContainerConfig(image="busybox", command=["sh", "-c",
                  "ip -4 addr show eth0 | grep -c inet"]), start_next=True)
netns = root / "engine" / "netns" / c.id
busy = is_locked(root / "engine" / "locks" / f"{{c.id}}.lock")
other = subprocess.run([{CORRAL!r}, "--root", str(root), "run", "--rm", "busybox", "true"],
                       capture_output=True, text=True, timeout=60)
kept = netns.exists()
engine.start(c.id)
code = engine.wait(c.id)
log = "".join(line.split(" ", 3)[-1] for line in Path(c.log_path).read_text().splitlines(True))
free = not is_locked(root / "engine" / "locks" / f"{{c.id}}.lock")
print(busy, other.returncode, kept, code, log.strip(), free)
"""
    python = str(REPO / ".venv" / "bin" / "python3")
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.stdout.split() == ["True", "0", "True", "0", "1", "True"], r.stdout + r.stderr
