"""Build OCI bundles with a busybox rootfs and drive an OCI runtime's CLI.

`Bundle` makes `<dir>/rootfs` (a copy of /bin/busybox plus one symlink per
applet, a few directories and /etc/passwd, /etc/group) and a `config.json`
taken from `corral-runtime spec`, made non-interactive (terminal false).
Tests edit `bundle.config` (a dict) and call `bundle.write()`.

`Runtime` runs one runtime binary (corral-runtime or runc) with a private
`--root`, so runtimes and tests never see each other's containers. Detached
commands (`create`, `exec --detach`, `run --detach`) send their stdio to
files, because the container inherits it: a pipe would stay open until the
container exits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BUSYBOX = "/bin/busybox"
CORRAL_RUNTIME = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "corral-runtime")
ID_PREFIX = "corral-test-"
DEFAULT_TIMEOUT = 30.0

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
corral:x:1000:1000:corral test user:/home/corral:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
tty:x:5:
users:x:100:
corral:x:1000:
extra:x:2000:
nogroup:x:65534:
"""


def unique_id(label: str = "") -> str:
    """A container id (or netns, cgroup name) no other test uses."""
    suffix = uuid.uuid4().hex[:10]
    return f"{ID_PREFIX}{label + '-' if label else ''}{suffix}"


def busybox_applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.split() if name and "/" not in name]


_APPLETS: list[str] | None = None


def make_rootfs(rootfs: Path) -> None:
    """A minimal busybox root: /bin/busybox, /bin/<applet> symlinks, /etc, mount points."""
    global _APPLETS
    if _APPLETS is None:
        _APPLETS = busybox_applets()
    for directory in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "home/corral",
                      "mnt", "run", "var"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)
    os.chmod(rootfs / "home/corral", 0o777)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in _APPLETS:
        link = rootfs / "bin" / applet
        if not link.exists():
            os.symlink("busybox", link)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    (rootfs / "etc" / "hostname").write_text("corral\n")


_SPEC_CACHE: dict | None = None


def base_config() -> dict:
    """`corral-runtime spec` output, made suitable for non-interactive probes."""
    global _SPEC_CACHE
    if _SPEC_CACHE is None:
        with tempfile.TemporaryDirectory(prefix=ID_PREFIX) as directory:
            subprocess.run([CORRAL_RUNTIME, "spec", "--bundle", directory], check=True,
                           capture_output=True, timeout=DEFAULT_TIMEOUT)
            _SPEC_CACHE = json.loads(Path(directory, "config.json").read_text())
    config = json.loads(json.dumps(_SPEC_CACHE))
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "true"]
    return config


class Bundle:
    """An OCI bundle directory with a busybox rootfs and an editable config."""

    def __init__(self, path: Path, container_id: str | None = None) -> None:
        self.path = Path(path)
        self.id = container_id or unique_id()
        self.rootfs = self.path / "rootfs"
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o755)
        make_rootfs(self.rootfs)
        os.chmod(self.rootfs, 0o755)
        self.config: dict[str, Any] = base_config()
        self.write()

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def process(self) -> dict:
        return self.config["process"]

    @property
    def linux(self) -> dict:
        return self.config.setdefault("linux", {})

    def args(self, *args: str) -> Bundle:
        self.process["args"] = list(args)
        return self

    def sh(self, script: str) -> Bundle:
        """Make the container's process `sh -c SCRIPT` and save the config."""
        self.process["args"] = ["sh", "-c", script]
        self.write()
        return self

    def namespaces(self) -> list[dict]:
        return self.linux.setdefault("namespaces", [])

    def set_namespace(self, kind: str, path: str | None = None) -> None:
        entries = [ns for ns in self.namespaces() if ns["type"] != kind]
        entry = {"type": kind}
        if path:
            entry["path"] = path
        entries.append(entry)
        self.linux["namespaces"] = entries

    def remove_namespace(self, kind: str) -> None:
        self.linux["namespaces"] = [ns for ns in self.namespaces() if ns["type"] != kind]

    def add_mount(self, destination: str, type_: str | None, source: str,
                  options: Iterable[str] = ()) -> None:
        mount: dict[str, Any] = {"destination": destination, "source": source}
        if type_:
            mount["type"] = type_
        if options:
            mount["options"] = list(options)
        self.config.setdefault("mounts", []).append(mount)

    def write(self, text: str | None = None) -> None:
        """Save the config (or raw `text`, to test malformed input)."""
        self.config_path.write_text(text if text is not None
                                    else json.dumps(self.config, indent=2))

    def hook(self, stage: str, path: str, args: list[str] | None = None,
             timeout: int | None = None, env: list[str] | None = None) -> None:
        hook: dict[str, Any] = {"path": path}
        if args is not None:
            hook["args"] = args
        if timeout is not None:
            hook["timeout"] = timeout
        if env is not None:
            hook["env"] = env
        self.config.setdefault("hooks", {}).setdefault(stage, []).append(hook)


class Result:
    """A finished runtime command: its exit code and what it printed."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __repr__(self) -> str:
        return (f"Result({' '.join(self.argv)!r}, rc={self.returncode}, "
                f"stdout={self.stdout!r}, stderr={self.stderr!r})")


class RuntimeError_(AssertionError):
    pass


class Runtime:
    """One OCI runtime binary with a per-test state root."""

    def __init__(self, name: str, binary: str, root: Path) -> None:
        self.name = name
        self.binary = binary
        self.root = Path(root)
        self.created: list[str] = []

    @property
    def is_corral(self) -> bool:
        return self.name == "corral"

    def __repr__(self) -> str:
        return f"Runtime({self.name})"

    # -- plumbing -----------------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def call(self, *args: str, check: bool = False, timeout: float = DEFAULT_TIMEOUT,
             input: str | None = None, pass_fds: tuple[int, ...] = (),
             cwd: str | None = None) -> Result:
        """Run with stdout/stderr captured by pipes (for commands that do not detach)."""
        argv = self.argv(*args)
        self._remember(args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              input=input, pass_fds=pass_fds, cwd=cwd,
                              stdin=None if input is not None else subprocess.DEVNULL)
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
        if check and result.returncode != 0:
            raise RuntimeError_(f"{self.name} failed: {result!r}")
        return result

    def call_detached(self, *args: str, log_dir: Path, check: bool = False,
                      timeout: float = DEFAULT_TIMEOUT, pass_fds: tuple[int, ...] = (),
                      cwd: str | None = None) -> Result:
        """Run a command whose container keeps the stdio: stdout/stderr go to files
        in `log_dir` (appended), and the result holds what the command itself wrote."""
        argv = self.argv(*args)
        self._remember(args)
        out_path, err_path = log_dir / "stdout.log", log_dir / "stderr.log"
        out_before = out_path.stat().st_size if out_path.exists() else 0
        err_before = err_path.stat().st_size if err_path.exists() else 0
        with open(out_path, "ab") as out, open(err_path, "ab") as err:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  timeout=timeout, pass_fds=pass_fds, cwd=cwd, check=False)
        result = Result(argv, proc.returncode, _read_from(out_path, out_before),
                        _read_from(err_path, err_before))
        if check and result.returncode != 0:
            raise RuntimeError_(f"{self.name} failed: {result!r}")
        return result

    def _remember(self, args: tuple[str, ...]) -> None:
        """Note ids of containers this call may create, for the fixture's clean-up."""
        verbs = [a for a in args if not a.startswith("-")]
        if verbs and verbs[0] in ("create", "run"):
            for arg in args:
                if arg.startswith(ID_PREFIX) and arg not in self.created:
                    self.created.append(arg)

    # -- verbs --------------------------------------------------------------
    def create(self, bundle: Bundle, *extra: str, container_id: str | None = None,
               check: bool = True, pass_fds: tuple[int, ...] = ()) -> Result:
        return self.call_detached("create", "--bundle", str(bundle.path), *extra,
                                  bundle.id if container_id is None else container_id,
                                  log_dir=bundle.path,
                                  check=check, pass_fds=pass_fds)

    def start(self, container_id: str, check: bool = True) -> Result:
        return self.call("start", container_id, check=check)

    def run(self, bundle: Bundle, *extra: str, container_id: str | None = None,
            check: bool = False, timeout: float = DEFAULT_TIMEOUT,
            pass_fds: tuple[int, ...] = ()) -> Result:
        """`run` in the foreground: the result holds the container's output."""
        return self.call("run", "--bundle", str(bundle.path), *extra,
                         bundle.id if container_id is None else container_id,
                         check=check, timeout=timeout,
                         pass_fds=pass_fds)

    def probe(self, bundle: Bundle, script: str | None = None, *extra: str,
              expect_code: int = 0) -> str:
        """Run `sh -c SCRIPT` in the foreground and return what it printed on stdout."""
        if script is not None:
            bundle.sh(script)
        result = self.run(bundle, *extra)
        assert result.returncode == expect_code, f"{self.name}: {result!r}"
        return result.stdout

    def start_sleeping(self, bundle: Bundle, seconds: int = 60) -> int:
        """create + start a container that sleeps; returns its init pid."""
        bundle.sh(f"sleep {seconds}")
        self.create(bundle)
        self.start(bundle.id)
        return self.state(bundle.id)["pid"]

    def state(self, container_id: str) -> dict:
        result = self.call("state", container_id, check=True)
        return json.loads(result.stdout)

    def state_or_none(self, container_id: str) -> dict | None:
        result = self.call("state", container_id)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def status(self, container_id: str) -> str:
        return self.state(container_id)["status"]

    def wait_status(self, container_id: str, status: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        current = ""
        while time.monotonic() < deadline:
            current = self.status(container_id)
            if current == status:
                return current
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: {container_id} stayed {current!r}, "
                             f"expected {status!r}")

    def kill(self, container_id: str, sig: str | None = None, *extra: str,
             check: bool = True) -> Result:
        args = ["kill", *extra, container_id] + ([sig] if sig else [])
        return self.call(*args, check=check)

    def delete(self, container_id: str, force: bool = False, check: bool = True) -> Result:
        args = ["delete"] + (["--force"] if force else []) + [container_id]
        return self.call(*args, check=check)

    def exec(self, container_id: str, *args: str, flags: Iterable[str] = (),
             check: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """`exec [FLAGS] ID ARGS...` in the foreground."""
        return self.call("exec", *flags, container_id, *args, check=check, timeout=timeout)

    def list_ids(self) -> list[str]:
        result = self.call("list", "--format", "json")
        if result.returncode != 0 or not result.stdout.strip():
            return []
        return [entry["id"] for entry in json.loads(result.stdout) or []]

    def cleanup(self) -> None:
        """delete --force every container this runtime root knows or we created."""
        ids = list(dict.fromkeys(self.created + self.list_ids()))
        for container_id in ids:
            state = self.state_or_none(container_id)
            try:
                self.call("delete", "--force", container_id, timeout=15)
            except subprocess.TimeoutExpired:
                pass
            if state and state.get("pid"):
                _kill_quietly(state["pid"])


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- host-side helpers --------------------------------------------------------
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_search_dirs() -> list[Path]:
    """Every directory where a test container's cgroup can appear: the hierarchy
    roots and this process's own cgroup in each hierarchy."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers if number != "0" else ""] = path
    found: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in sorted(CGROUP_ROOT.iterdir()):
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        candidates = {hierarchy}
        for controllers, path in own.items():
            name = "unified" if controllers == "" else controllers.removeprefix("name=")
            if hierarchy.name == name or set(hierarchy.name.split(",")) == set(
                    controllers.split(",")):
                candidates.add(hierarchy / path.lstrip("/"))
        found.extend(sorted(c for c in candidates if c.is_dir()))
    return found


def find_test_cgroups(name: str | None = None) -> list[Path]:
    """Cgroup directories named corral-test-* (or exactly `name`)."""
    found = []
    for directory in cgroup_search_dirs():
        try:
            children = list(directory.iterdir())
        except OSError:
            continue
        for child in children:
            if child.is_dir() and (child.name == name if name else
                                   child.name.startswith(ID_PREFIX)):
                found.append(child)
    return found


def remove_cgroup(path: Path) -> None:
    """Kill what is left inside, then rmdir deepest first."""
    for directory, _, files in sorted(os.walk(path), key=lambda e: -len(e[0])):
        if "cgroup.procs" in files:
            try:
                for line in Path(directory, "cgroup.procs").read_text().split():
                    _kill_quietly(int(line))
            except OSError:
                pass
    deadline = time.monotonic() + 5
    for directory, _, _ in sorted(os.walk(path), key=lambda e: -len(e[0])):
        while True:
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)


def processes_rooted_in(path: Path) -> list[int]:
    """Host pids whose root directory (/proc/<pid>/root) is `path` or below it."""
    real = os.path.realpath(path)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            root = os.readlink(f"/proc/{name}/root")
        except OSError:
            continue
        if root == real or root.startswith(real + "/"):
            found.append(int(name))
    return found


def ns_link(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def is_root() -> bool:
    return os.geteuid() == 0


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)
