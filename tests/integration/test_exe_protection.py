"""A container cannot overwrite the runtime's interpreter through /proc/<pid>/exe
(the CVE-2019-5736 class; see corral.runtime.exe_guard).

The attack: make the kernel run the runtime's own binary inside the container
(a `#!/proc/self/exe` program, or a runtime process visible during `exec`), get
a handle on /proc/<pid>/exe, and write through it once that binary is free.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.bundles import CORRAL_RUNTIME

# Every process the container sees: try to open its exe for writing, report success.
_UNUSED = r"""
hit=0
for round in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  for exe in /proc/[0-9]*/exe; do
    if (echo -n >> "$exe") 2>/dev/null; then echo "WROTE $exe"; hit=1; fi
  done
  usleep 50000
done
echo done $hit
"""


# Watch for a process whose exe is not busybox (the host interpreter, run by the
# kernel for a `#!/proc/self/exe` entrypoint); hold a read handle on it; once it
# has exited, reopen the handle for writing. Appending zero bytes proves the
# write would work without changing the file.
WATCHER = r"""
end=$(( $(date +%s) + 60 ))   # a watcher leaked by a killed test run stops by itself
while [ $(date +%s) -lt $end ]; do
  for p in /proc/[0-9]*; do
    l=$(readlink $p/exe 2>/dev/null)
    case "$l" in ""|*busybox*) continue ;; esac
    (exec 3< $p/exe) 2>/dev/null || continue
    exec 3< $p/exe
    echo "handle on $l" > /tmp/result
    while [ -e $p ]; do :; done
    if (echo -n >> /proc/self/fd/3) 2>/dev/null; then echo WROTE >> /tmp/result; fi
    echo done >> /tmp/result
    exec sleep 600
  done
done
"""


def _interpreter() -> Path:
    first_line = Path(CORRAL_RUNTIME).read_text().splitlines()[0]
    return Path(first_line[2:].split()[0]).resolve()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def interpreter():
    path = _interpreter()
    if not path.exists():
        pytest.skip(f"corral-runtime's interpreter {path} is missing: run scripts/setup")
    return path


def test_interpreter_is_immutable_even_for_root(interpreter):
    attributes = subprocess.run(["lsattr", str(interpreter)], capture_output=True, text=True)
    assert attributes.stdout.split()[0].find("i") >= 0, attributes.stdout
    with pytest.raises(PermissionError):
        os.open(interpreter, os.O_WRONLY | os.O_APPEND)


def test_shebang_proc_self_exe_cannot_write_the_interpreter(make_bundle, interpreter):
    """A container whose entrypoint is `#!/proc/self/exe`: the kernel resolves that in
    the runtime's init, whose exe is the runtime's interpreter, and runs it inside the
    container. A second container sharing its pid namespace tries to write to it."""
    import time

    from tests.support.bundles import Runtime

    before = _digest(interpreter)
    watcher = make_bundle()
    watcher.config["root"]["readonly"] = False
    watcher.sh(WATCHER)
    victim = make_bundle()
    evil = victim.rootfs / "evil"
    evil.write_text("#!/proc/self/exe\n")
    evil.chmod(0o755)
    victim.args("/evil")
    runtime = Runtime("corral", CORRAL_RUNTIME, watcher.path / "root")
    result = watcher.rootfs / "tmp" / "result"
    try:
        runtime.create(watcher)
        runtime.start(watcher.id)
        pid = runtime.state(watcher.id)["pid"]
        victim.set_namespace("pid", f"/proc/{pid}/ns/pid")
        victim.write()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            runtime.run(victim)
            runtime.call("delete", "--force", victim.id)
            if result.exists() and "done" in result.read_text():
                break
        report = result.read_text() if result.exists() else ""
    finally:
        runtime.cleanup()
    # Kernels of 6.x refuse the `/proc/self/exe` interpreter outright (runc's init gets
    # ENOENT too); where one runs it, the watcher's write must still be refused.
    assert "WROTE" not in report, report
    assert _digest(interpreter) == before


def test_exec_process_exe_is_unreachable_from_the_container(make_bundle, interpreter):
    """While `exec` sets a process up, it runs the interpreter inside the container's
    pid namespace; the container polls every /proc/<pid>/exe it sees meanwhile, and
    its setup processes are non-dumpable, so it never gets a handle."""
    from tests.support.bundles import Runtime

    before = _digest(interpreter)
    bundle = make_bundle()
    bundle.config["root"]["readonly"] = False
    bundle.sh(WATCHER)
    runtime = Runtime("corral", CORRAL_RUNTIME, bundle.path / "root")
    result = bundle.rootfs / "tmp" / "result"
    try:
        runtime.create(bundle)
        runtime.start(bundle.id)
        for _ in range(20):
            runtime.call("exec", bundle.id, "true", check=True)
        report = result.read_text() if result.exists() else ""
    finally:
        runtime.cleanup()
    assert "handle on" not in report, report
    assert "WROTE" not in report, report
    assert _digest(interpreter) == before
