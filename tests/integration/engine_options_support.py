"""Run containers from `corral.engine.spec.build_spec` specs on a real runtime.

`SpecRunner` owns a temporary store (with a busybox image made by `corral image
busybox`) and one OCI runtime (corral-runtime or runc, private --root). `run(config)`
creates a container in the store, builds its spec from `config` (a ContainerConfig-like
dict), runs it in the foreground and returns (exit code, stdout, stderr, spec); the
container, its runtime state and cgroup are always removed. This tests the spec builder
against both runtimes without the engine's monitor in the way; the CLI tests
(`corral run ...`) cover the wiring.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CORRAL = str(REPO / ".venv" / "bin" / "corral")
CORRAL_RUNTIME = str(REPO / ".venv" / "bin" / "corral-runtime")
RUNC = shutil.which("runc") or "/usr/sbin/runc"


@dataclass
class Result:
    code: int
    out: str
    err: str
    spec: dict
    container_id: str


def _processes_using(root: Path) -> list[int]:
    """Processes (conmon, its `container cleanup` exit command) that name `root`."""
    needle = str(root).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def cleanup_root(root: Path, wait: float = 15.0) -> None:
    """Wait for the monitors of the store's containers to finish (their exit command
    would recreate the store), unmount everything under `root`, then remove it."""
    import time

    deadline = time.monotonic() + wait
    while _processes_using(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


class SpecRunner:
    def __init__(self, root: Path, runtime: str, image: str) -> None:
        from corral.storage import Store

        self.root = root
        self.runtime = runtime
        self.runtime_root = root / "runtime"
        self.image = image
        self.store = Store.open(root)

    def image_config(self, image: str | None = None) -> Any:
        from corral.oci.image import ImageConfig

        record = self.store.image(image or self.image)
        return ImageConfig.from_bytes(self.store.content.read_bytes(record.id,
                                                                    max_size=16 << 20))

    def run(self, config: dict, *, image: str | None = None, timeout: float = 60,
            prepare: Callable[[Path], None] | None = None, keep: bool = False,
            stdin: bytes | None = None) -> Result:
        """Create, build the spec, `runtime run`, remove (unless `keep`)."""
        from corral.engine.spec import build_spec

        store = self.store
        record = store.create_container(image or self.image)
        cid = record.id
        try:
            rootfs = store.mount(cid)
            try:
                if prepare is not None:
                    prepare(rootfs)
                spec = build_spec(self.image_config(image), config, rootfs=rootfs,
                                  container_id=cid, store=store)
                bundle = store.container_dir(cid)
                (bundle / "config.json").write_text(json.dumps(spec, indent=1))
                proc = subprocess.run([self.runtime, "--root", str(self.runtime_root), "run",
                                       "--bundle", str(bundle), cid], input=stdin,
                                      capture_output=True, timeout=timeout, check=False)
            finally:
                subprocess.run([self.runtime, "--root", str(self.runtime_root), "delete",
                                "--force", cid], capture_output=True, check=False)
                store.unmount(cid, force=True)
            return Result(proc.returncode, proc.stdout.decode(errors="replace"),
                          proc.stderr.decode(errors="replace"), spec, cid)
        finally:
            if not keep:
                store.remove_container(cid)

    def remove(self, container_id: str) -> None:
        self.store.remove_container(container_id)


def make_store_with_busybox() -> tuple[Path, str]:
    root = Path(tempfile.mkdtemp(prefix="corral-test-store-"))
    os.chmod(root, 0o711)
    name = f"corral-test-bb-{uuid.uuid4().hex[:8]}"
    subprocess.run([CORRAL, "--root", str(root), "image", "busybox", name], check=True,
                   capture_output=True, timeout=300)
    return root, name


def start_detached(runner: SpecRunner, config: dict, *, image: str | None = None) -> str:
    """A running container (`runtime run --detach`, stdio to /dev/null); stop it with
    `stop_detached`."""
    from corral.engine.spec import build_spec

    store = runner.store
    record = store.create_container(image or runner.image)
    try:
        rootfs = store.mount(record.id)
        spec = build_spec(runner.image_config(image), config, rootfs=rootfs,
                          container_id=record.id, store=store)
        bundle = store.container_dir(record.id)
        (bundle / "config.json").write_text(json.dumps(spec, indent=1))
        subprocess.run([runner.runtime, "--root", str(runner.runtime_root), "run", "--detach",
                        "--bundle", str(bundle), record.id], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
                       check=True)
    except BaseException:
        stop_detached(runner, record.id)
        raise
    return record.id


def stop_detached(runner: SpecRunner, container_id: str, *, remove: bool = True) -> None:
    subprocess.run([runner.runtime, "--root", str(runner.runtime_root), "delete", "--force",
                    container_id], capture_output=True, check=False, timeout=60)
    try:
        runner.store.unmount(container_id, force=True)
        if remove:
            runner.store.remove_container(container_id)
    except Exception:  # noqa: BLE001, S110 - already gone
        pass
