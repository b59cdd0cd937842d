"""Runtime handlers: `RunPodSandboxRequest.runtime_handler` → the OCI runtime the pod's
infra and containers run under (the engine's per-container `runtime`).

Default map: `""` (the default handler) → the engine's runtime (`--runtime`, or
corral.conf's engine.runtime, or corral-runtime), then one handler per runtime found:
`corral` → corral-runtime, `runc` and `crun` when installed.

A CRI config file replaces the detected handlers: the file named by
`$CORRAL_CRI_CONFIG` (it must exist) or else `/etc/corral/cri.conf` (if present),
TOML:

    default_runtime_handler = "runc"     # what "" means (default: the engine's runtime)

    [runtime_handlers]
    runc = "runc"                        # a runtime name on $PATH or an absolute path
    fast = "/usr/local/bin/crun"

Unknown keys and runtimes that cannot be found are errors at start-up, naming the file
and key. `Status` reports every handler with its features: recursive read-only mounts
when the runtime's `features` lists `rro` and the kernel is 5.12 or newer; user
namespaces never (the CRI server does not map pod user namespaces yet).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import InvalidArgument, NotFound

SYSTEM_CONFIG = Path("/etc/corral/cri.conf")
CONFIG_ENV = "CORRAL_CRI_CONFIG"
#: handler name -> runtime looked for on the host by default
DETECTED = (("corral", "corral-runtime"), ("runc", "runc"), ("crun", "crun"))


class HandlerNotFound(NotFound):
    """RunPodSandbox names a runtime handler the server has not configured."""


class CRIConfigError(InvalidArgument):
    """The CRI config file is malformed, names an unknown key or a missing runtime."""


@dataclass
class Handler:
    name: str
    runtime: str  # the runtime's absolute path
    _features: dict | None = field(default=None, repr=False)

    def features(self) -> dict[str, bool]:
        """{recursive_read_only_mounts, user_namespaces}, probed once."""
        if self._features is None:
            self._features = {"recursive_read_only_mounts": _rro(self.runtime),
                              "user_namespaces": False}
        return self._features


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = os.uname().release.split("-")[0].split(".")
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def _rro(runtime: str) -> bool:
    """The runtime handles the `rro` mount option (its `features`) on a kernel that has
    mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE) (5.12)."""
    if not _kernel_at_least(5, 12):
        return False
    try:
        result = subprocess.run([runtime, "features"], capture_output=True, text=True,
                                timeout=10, check=False)
        data = json.loads(result.stdout) if result.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return False
    return "rro" in (data.get("mountOptions") or [])


def _resolve(name: str) -> str:
    from corral.engine.oci import resolve_runtime

    return resolve_runtime(name)


class Handlers:
    """The server's handlers by name ("" the default one)."""

    def __init__(self, handlers: dict[str, str], source: str = "") -> None:
        self.source = source
        self._by_name: dict[str, Handler] = {}
        for name, runtime in handlers.items():
            self._by_name[name] = Handler(name, runtime)
        self._lock = threading.Lock()
        self._others: dict[str, bool] = {}  # rro() of runtimes that are no handler's
        if "" not in self._by_name:
            raise CRIConfigError("no default runtime handler")

    @classmethod
    def detect(cls, engine_runtime: str | None) -> Handlers:
        """"" → the engine's runtime, then each runtime of DETECTED found on the host."""
        from corral.engine.oci import RuntimeNotFound

        found = {"": _resolve(engine_runtime or "corral-runtime")}
        for name, runtime in DETECTED:
            try:
                path = _resolve(runtime)
            except RuntimeNotFound:
                continue
            if os.access(path, os.X_OK):
                found[name] = path
        return cls(found, source="detected")

    @classmethod
    def from_file(cls, path: Path, engine_runtime: str | None) -> Handlers:
        where = str(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise CRIConfigError(f"{where}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise CRIConfigError(f"{where}: {exc}") from None
        unknown = set(data) - {"default_runtime_handler", "runtime_handlers"}
        if unknown:
            raise CRIConfigError(f"{where}: unknown key {min(unknown)!r}")
        table = data.get("runtime_handlers", {})
        if not isinstance(table, dict):
            raise CRIConfigError(f"{where}: runtime_handlers must be a table")
        handlers: dict[str, str] = {}
        for name, runtime in table.items():
            key = f"{where}: runtime_handlers.{name}"
            if not name:
                raise CRIConfigError(f"{key}: the default handler is set with "
                                     "default_runtime_handler")
            if not isinstance(runtime, str) or not runtime:
                raise CRIConfigError(f"{key}: expected a runtime name or path")
            try:
                handlers[name] = _resolve(runtime)
            except InvalidArgument as exc:
                raise CRIConfigError(f"{key}: {exc}") from None
        default = data.get("default_runtime_handler")
        if default is None:
            handlers[""] = _resolve(engine_runtime or "corral-runtime")
        elif not isinstance(default, str) or default not in handlers:
            raise CRIConfigError(f"{where}: default_runtime_handler {default!r} is not one "
                                 "of runtime_handlers")
        else:
            handlers[""] = handlers[default]
        return cls(handlers, source=where)

    @classmethod
    def load(cls, engine_runtime: str | None) -> Handlers:
        """From $CORRAL_CRI_CONFIG, else /etc/corral/cri.conf, else detected."""
        env = os.environ.get(CONFIG_ENV)
        if env:
            if not os.path.exists(env):
                raise CRIConfigError(f"${CONFIG_ENV}={env}: no such file")
            return cls.from_file(Path(env), engine_runtime)
        if SYSTEM_CONFIG.exists():
            return cls.from_file(SYSTEM_CONFIG, engine_runtime)
        return cls.detect(engine_runtime)

    def as_dict(self) -> dict[str, str]:
        """{handler name: runtime path}."""
        return {h.name: h.runtime for h in self._by_name.values()}

    def get(self, name: str) -> Handler:
        handler = self._by_name.get(name)
        if handler is None:
            known = ", ".join(json.dumps(n) for n in self._by_name)
            raise HandlerNotFound(f"RunPodSandboxRequest.runtime_handler {name!r} is not "
                                  f"configured (configured: {known})")
        return handler

    def rro(self, runtime: str) -> bool:
        """Whether `runtime` (a path; a handler's or not, e.g. after a restart with
        another map) does recursive read-only mounts."""
        with self._lock:
            for h in self._by_name.values():
                if h.runtime == runtime:
                    return h.features()["recursive_read_only_mounts"]
            if runtime not in self._others:
                self._others[runtime] = _rro(runtime)
            return self._others[runtime]

    def runtime_handlers(self) -> list[Any]:
        """StatusResponse.runtime_handlers: every handler with its features."""
        from corral.cri._gen import api_pb2 as pb

        with self._lock:  # the features are probed once, by one caller
            out = []
            for h in self._by_name.values():
                out.append(pb.RuntimeHandler(name=h.name, features=pb.RuntimeHandlerFeatures(
                    **h.features())))
        return out
