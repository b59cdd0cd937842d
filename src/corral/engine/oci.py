"""The engine's only way to an OCI runtime: its runc-compatible command line.

`resolve_runtime(name_or_path)`: `corral-runtime` (default; beside the interpreter),
`runc`, `runsc`, `crun` by name on $PATH or an absolute path. Each runtime keeps its
state under its own `--root` in the store (`<root>/runtime` for corral-runtime,
`<root>/runtime-<name>` for the others), so two runtimes never read each other's state.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from corral.errors import InvalidArgument, NotFound, SystemFailure
from corral.programs import which

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    import subprocess
    from typing import Any


class RuntimeNotFound(InvalidArgument):
    """--runtime names no executable."""


class RuntimeError_(SystemFailure):
    """The OCI runtime failed; the message carries its stderr."""


def default_runtime() -> str:
    beside = Path(sys.executable).parent / "corral-runtime"
    if beside.exists():
        return str(beside)
    return which("corral-runtime") or "corral-runtime"


def resolve_runtime(name: str | None) -> str:
    if not name or name == "corral-runtime":
        return default_runtime()
    if "/" in name:
        if not (os.path.isfile(name) and os.access(name, os.X_OK)):
            raise RuntimeNotFound(f"OCI runtime {name!r} is not an executable file")
        return os.path.abspath(name)
    found = which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)),
        None)
    if not found:
        raise RuntimeNotFound(f"OCI runtime {name!r} not found on $PATH")
    return found


def runtime_root(store_root: Path, runtime: str) -> str:
    base = os.path.basename(runtime)
    if base == "corral-runtime":
        return str(store_root / "runtime")
    return str(store_root / f"runtime-{base}")


def runs_in_process(path: str) -> bool:
    """corral-runtime beside this interpreter: its verbs can be calls (see OCIRuntime)."""
    return os.path.basename(path) == "corral-runtime" and path == default_runtime()


class OCIRuntime:
    """A runtime driven through its runc-compatible CLI. corral-runtime beside this
    interpreter is the exception for `start`, `kill`, `delete` and `state`: they are calls
    into `corral.runtime`, the same code its CLI runs, without a Python start-up each
    (~10 ms apiece on the `run` path). `create` (and `exec`) always go through the CLI:
    conmon runs them, and they need a fresh single-threaded process."""

    def __init__(self, path: str, root: str) -> None:
        self.path = path
        self.root = root
        self.in_process = runs_in_process(path)

    def _in_process(self, command: str, action: Callable[[], Any], check: bool = True
                    ) -> Any:
        from corral.errors import CorralError

        try:
            return action()
        except (CorralError, OSError) as exc:
            if not check:
                return None
            raise RuntimeError_(f"corral-runtime {command}: {exc}") from None

    def argv(self, *args: str) -> list[str]:
        return [self.path, "--root", self.root, *args]

    def call(self, *args: str, timeout: float = 60, check: bool = True
             ) -> subprocess.CompletedProcess:
        import subprocess

        try:
            result = subprocess.run(self.argv(*args), capture_output=True, text=True,
                                    timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise NotFound(f"OCI runtime {self.path} not found") from exc
        if check and result.returncode != 0:
            raise RuntimeError_(f"{os.path.basename(self.path)} {args[0]}: "
                                f"{result.stderr.strip() or 'exit status ' + str(result.returncode)}")
        return result

    def run_forked(self, *args: str, stdin_null: bool = False) -> tuple[int, str]:
        """Run a verb that needs a process of its own (`exec`: setns into the container)
        through corral-runtime's CLI code in a forked child of this process instead of a
        new interpreter (~15 ms less). stdout is this process's; stderr comes back as
        text. Call it with no other thread running (fork)."""
        from corral.engine.forked import run_capturing_stderr

        def child() -> int:
            from corral.runtime.cli import main

            return main(["--root", self.root, *args])

        return run_capturing_stderr(child, stdin_null=stdin_null)

    def state(self, container_id: str) -> dict | None:
        if self.in_process:
            from corral.runtime.state import Container

            return self._in_process("state", lambda: Container.load(
                self.root, container_id).runc_state(), check=False)
        result = self.call("state", container_id, check=False, timeout=30)
        if result.returncode != 0:
            return None
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None

    def stats(self, container_id: str, timeout: float = 30) -> dict | None:
        """One sample of `events --stats` (runc's JSON `data`); None if there is none."""
        import subprocess

        try:
            result = subprocess.run(self.argv("events", "--stats", container_id),
                                    capture_output=True, text=True, timeout=timeout,
                                    check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if result.returncode != 0:
            return None
        for line in result.stdout.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "stats":
                return event.get("data") or {}
        return None

    def start(self, container_id: str) -> None:
        if self.in_process:
            from corral.runtime.container_start import start

            self._in_process("start", lambda: start(self.root, container_id))
            return
        self.call("start", container_id)

    def kill(self, container_id: str, signal: str, all_: bool = False) -> None:
        if self.in_process:
            from corral.linux import signals
            from corral.runtime.container_kill import kill

            self._in_process("kill", lambda: kill(self.root, container_id,
                                                  signals.parse(signal), all_))
            return
        self.call("kill", *(["--all"] if all_ else []), container_id, signal)

    def delete(self, container_id: str, force: bool = True) -> None:
        """Errors are ignored (a container already gone is what delete wants)."""
        if self.in_process:
            from corral.runtime.container_delete import delete

            self._in_process("delete", lambda: delete(self.root, container_id, force),
                             check=False)
            return
        self.call("delete", *(["--force"] if force else []), container_id, check=False)

    def pause(self, container_id: str) -> None:
        self.call("pause", container_id)

    def resume(self, container_id: str) -> None:
        self.call("resume", container_id)


__all__ = ["OCIRuntime", "RuntimeNotFound", "default_runtime", "resolve_runtime",
           "runs_in_process", "runtime_root"]
