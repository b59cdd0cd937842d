"""POSIX-platform hooks (config.md#posix-platform-hooks).

Each hook is `path`, `args`, `env`, `timeout`; it gets the container's state
on stdin. Where each kind runs (runtime.md#lifecycle):
  prestart, createRuntime  — runtime namespace, during create, after namespaces exist;
  createContainer          — container namespaces, during create, before pivot_root;
  startContainer           — container namespaces, during start, before the user process;
  poststart                — runtime namespace, after the user process started;
  poststop                 — runtime namespace, during delete.
A failing hook fails the operation, except poststart and poststop, which only warn.
"""

from __future__ import annotations

import os
import time

from corral.errors import SystemFailure
from corral.oci import fastjson

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")


class HookFailed(SystemFailure):
    pass


def run_all(config: dict, kind: str, state: dict) -> None:
    """Run every hook of `kind` in order; raise HookFailed naming the first that fails."""
    hooks = (config.get("hooks") or {}).get(kind) or []
    for index, hook in enumerate(hooks):
        run_one(hook, state, f"hooks.{kind}[{index}]")


def run_one(hook: dict, state: dict, field: str) -> None:
    """fork+exec the hook with the state on a pipe as stdin; enforce `timeout` seconds."""
    payload = fastjson.dumps(state).encode()
    read_end, write_end = os.pipe()
    args = hook.get("args") or [hook["path"]]
    env = {}
    for item in hook.get("env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    pid = os.fork()
    if pid == 0:
        try:
            os.close(write_end)
            os.dup2(read_end, 0)
            os.execve(hook["path"], args, env)
        except BaseException as exc:  # noqa: BLE001 - report and leave the child
            os.write(2, f"{field}: cannot run {hook['path']}: {exc}\n".encode())
        os._exit(127)
    os.close(read_end)
    try:
        os.write(write_end, payload)
    except BrokenPipeError:
        pass  # the hook does not read its stdin; that is allowed
    finally:
        os.close(write_end)
    status = _wait(pid, hook.get("timeout"), field, hook["path"])
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise HookFailed(f"{field} ({hook['path']}) failed with exit status {code}")


def _wait(pid: int, timeout: int | None, field: str, path: str) -> int:
    if not timeout:
        return os.waitpid(pid, 0)[1]
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise HookFailed(f"{field} ({path}) timed out after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
