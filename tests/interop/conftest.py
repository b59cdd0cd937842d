"""Fixtures for the podman interop suite, parametrized over corral-runtime and runc.

podman drives the runtime through conmon with runc's CLI contract
(`create --bundle --pid-file [--console-socket]`, `start`, `exec --process
--detach [--tty --console-socket] --pid-file`, `kill [--all]`, `delete --force`,
`pause`/`resume`, and `--log-format=json --log FILE` when the runtime's name is
in containers.conf's `runtime_supports_json`). runc runs the same tests as the
reference: a failure only with corral-runtime is corral's bug.

Isolation: every podman command gets a private store (`--root`, `--runroot`,
`--tmpdir` under one temporary directory, the `vfs` driver, cgroupfs, file
events), so the host's podman containers and images are never seen or touched.
The image `localhost/corral-test-busybox:latest` is imported from a busybox
rootfs tar (no registry). Containers are named `corral-test-<random>`; teardown
always runs `podman rm -f` on them, then `rm -af`, `rmi -af` on the private
store and removes the directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORRAL_RUNTIME = os.environ.get("CORRAL_RUNTIME") or str(REPO / ".venv" / "bin" / "corral-runtime")
RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
PODMAN = shutil.which("podman")
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
IMAGE = "localhost/corral-test-busybox:latest"
NAME_PREFIX = "corral-test-"
TIMEOUT = 60.0
APPLETS = ("sh", "sleep", "cat", "echo", "id", "hostname", "ps", "top", "tty", "stty", "ls",
           "true", "false", "env", "kill", "mount", "grep", "wc", "pwd")

CONTAINERS_CONF = Path("/etc/containers/containers.conf")
ULIMITS_LINE = 'default_ulimits = ["nofile=20000:20000","nproc=30000:30000"]'


def ensure_containers_conf(path: Path = CONTAINERS_CONF) -> None:
    """podman here needs default_ulimits under [containers] (the host's nproc hard limit
    is below podman's default): add it, keeping whatever the file already holds."""
    text = path.read_text() if path.exists() else ""
    if "default_ulimits" in text:
        return
    if "[containers]" in text:
        text = text.replace("[containers]", "[containers]\n" + ULIMITS_LINE, 1)
    else:
        prefix = text.rstrip("\n") + "\n\n" if text.strip() else ""
        text = f"{prefix}[containers]\n{ULIMITS_LINE}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".corral-tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def run_cmd(argv: list[str], *, timeout: float = TIMEOUT, input: str | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run argv in its own process group; on timeout kill the group and fail."""
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout}s: {' '.join(argv)}\n"
                             f"stdout: {out}\nstderr: {err}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@dataclass
class Podman:
    """podman with a private store and one runtime (`--runtime <absolute path>`)."""

    runtime: str
    base: Path
    names: list[str] = field(default_factory=list)
    env: dict | None = None

    @property
    def global_args(self) -> list[str]:
        return [PODMAN, "--root", str(self.base / "root"), "--runroot", str(self.base / "runroot"),
                "--tmpdir", str(self.base / "tmp"), "--storage-driver", "vfs",
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--runtime", self.runtime]

    def argv(self, *args: str) -> list[str]:
        return self.global_args + list(args)

    def __call__(self, *args: str, check: bool = False, timeout: float = TIMEOUT,
                 input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        result = run_cmd(self.argv(*args), timeout=timeout, input=input, env=env or self.env)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def new_name(self) -> str:
        name = NAME_PREFIX + uuid.uuid4().hex[:12]
        self.names.append(name)
        return name

    def remove_all_named(self) -> None:
        for name in self.names:
            self("rm", "-f", "-t", "0", "--ignore", name)
        self.names.clear()


def _build_rootfs_tar(directory: Path) -> Path:
    rootfs = directory / "rootfs"
    for sub in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/corral"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                           "corral:x:1000:1000::/home/corral:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\ncorral:x:1000:\n")
    os.chmod(rootfs / "tmp", 0o1777)
    archive = directory / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    shutil.rmtree(rootfs)
    return archive


def _runtimes() -> list:
    return [
        pytest.param(CORRAL_RUNTIME, id="corral-runtime"),
        pytest.param(RUNC, id="runc", marks=pytest.mark.skipif(
            RUNC is None, reason="runc is not installed (the reference runtime)")),
    ]


@pytest.fixture(scope="session")
def podman_store():
    """One private podman store with the test image, shared by both runtimes."""
    if PODMAN is None:
        pytest.skip("podman is not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root: podman with cgroupfs and a private rootful store")
    if not os.path.exists(BUSYBOX):
        pytest.skip(f"busybox is not installed at {BUSYBOX} (the test image is built from it)")
    ensure_containers_conf()
    base = Path(tempfile.mkdtemp(prefix="corral-test-podman-", dir="/tmp"))
    for sub in ("root", "runroot", "tmp"):
        (base / sub).mkdir()
    importer = Podman(CORRAL_RUNTIME, base)
    try:
        archive = _build_rootfs_tar(base)
        importer("import", "--change", 'CMD=["/bin/sh"]', str(archive), IMAGE, check=True)
        archive.unlink()
        yield base
    finally:
        importer("rm", "-a", "-f", "-t", "0")
        importer("rmi", "-a", "-f")
        _remove_tree(base)


def _remove_tree(base: Path) -> None:
    # The store may hold mounts left by a crashed podman (shm, overlay): unmount first.
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for target in sorted((m for m in mounts if m.startswith(str(base) + "/")), reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=_runtimes())
def podman(request, podman_store):
    runtime = request.param
    if not os.access(runtime, os.X_OK):
        pytest.skip(f"{runtime} is not executable (run scripts/setup first)")
    client = Podman(runtime, podman_store)
    try:
        yield client
    finally:
        client.remove_all_named()


@pytest.fixture
def sleeper(podman):
    """A running detached container (`sleep 1000` as PID 1); yields its name."""
    name = podman.new_name()
    podman("run", "-d", "--network", "none", "--name", name, IMAGE, "sleep", "1000", check=True)
    return name


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)

