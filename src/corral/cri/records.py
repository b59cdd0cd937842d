"""The CRI server's own records, beside the engine's: one JSON file per pod sandbox and
per container under `<store root>/cri/`, so a restarted server knows its pods.

A record keeps what the engine has no place for: the CRI config as given (the
serialized `PodSandboxConfig` / `ContainerConfig`, base64), the sandbox state
(SANDBOX_READY until StopPodSandbox), creation time in nanoseconds, the image as
asked for, the log path. The sandbox id is the infra container's engine id, a
container's id its engine id. Files are written temp → rename (`write_json`).
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path
from typing import Any

from corral.errors import InvalidArgument, NotFound
from corral.storage.records import read_json, write_json


class SandboxNotFound(NotFound):
    """No pod sandbox with that id."""


class ContainerNotFound(NotFound):
    """No CRI container with that id."""


def encode(message: Any) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def decode(cls: Any, text: str) -> Any:
    message = cls()
    message.ParseFromString(base64.b64decode(text))
    return message


class Records:
    """`<root>/cri/{sandboxes,containers}/<id>.json`."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "cri"
        self.sandboxes = self.dir / "sandboxes"
        self.containers = self.dir / "containers"
        for d in (self.sandboxes, self.containers):
            d.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _check(ident: str, what: str) -> None:
        if not ident or not all(c in "0123456789abcdef" for c in ident):
            raise InvalidArgument(f"{what} id {ident!r} is not valid (hex digits)")

    def _resolve(self, directory: Path, ident: str, what: str, error: type) -> str:
        """A full id from an id or a unique prefix."""
        if not ident:
            raise InvalidArgument(f"{what} id is required")
        self._check(ident, what)
        if (directory / f"{ident}.json").exists():
            return ident
        matches = [p.stem for p in directory.glob(f"{ident}*.json")]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"{what} id prefix {ident!r} is ambiguous")
        raise error(f"{what} {ident!r} not found")

    # -- sandboxes ------------------------------------------------------------------------
    def sandbox_id(self, ident: str) -> str:
        return self._resolve(self.sandboxes, ident, "pod sandbox", SandboxNotFound)

    def sandbox(self, ident: str) -> dict:
        full = self.sandbox_id(ident)
        data = read_json(self.sandboxes / f"{full}.json", None)
        if data is None:
            raise SandboxNotFound(f"pod sandbox {ident!r} not found")
        return data

    def save_sandbox(self, record: dict) -> None:
        self._check(record["id"], "pod sandbox")
        write_json(self.sandboxes / f"{record['id']}.json", record)

    def all_sandboxes(self) -> list[dict]:
        return _all(self.sandboxes)

    def drop_sandbox(self, ident: str) -> None:
        self._check(ident, "pod sandbox")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sandboxes / f"{ident}.json")

    # -- containers -----------------------------------------------------------------------
    def container_id(self, ident: str) -> str:
        return self._resolve(self.containers, ident, "container", ContainerNotFound)

    def container(self, ident: str) -> dict:
        full = self.container_id(ident)
        data = read_json(self.containers / f"{full}.json", None)
        if data is None:
            raise ContainerNotFound(f"container {ident!r} not found")
        return data

    def save_container(self, record: dict) -> None:
        self._check(record["id"], "container")
        write_json(self.containers / f"{record['id']}.json", record)

    def all_containers(self) -> list[dict]:
        return _all(self.containers)

    def drop_container(self, ident: str) -> None:
        self._check(ident, "container")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.containers / f"{ident}.json")


def _all(directory: Path) -> list[dict]:
    out = []
    for path in sorted(directory.glob("*.json")):
        data = read_json(path, None)
        if data:
            out.append(data)
    return sorted(out, key=lambda r: r.get("created_at", 0))
