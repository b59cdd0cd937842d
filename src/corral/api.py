"""The Python API: run a container, stream its logs, wait for it — from a script.

    import corral
    c = corral.run("busybox", ["echo", "hi"], detach=True)
    for line in c.logs(follow=True):
        print(line.text)
    print(c.wait())      # exit code
    c.remove()

A thin layer over `corral.engine.Engine` (the same engine the CLI uses, no daemon).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from corral.engine.config import ContainerConfig
from corral.engine.engine import Engine


class Container:
    """A handle on one container; properties re-read its record."""

    def __init__(self, engine: Engine, container_id: str) -> None:
        self.engine = engine
        self.id = container_id

    def __repr__(self) -> str:
        return f"<corral.Container {self.id[:12]} {self.name}>"

    @property
    def name(self) -> str:
        return self.engine.get(self.id).name

    @property
    def status(self) -> str:
        return self.engine.get(self.id).status

    @property
    def exit_code(self) -> int | None:
        return self.engine.get(self.id).state.exit_code

    def logs(self, follow: bool = False, tail: int | None = None) -> Iterator[Any]:
        """LogLine items (`.timestamp`, `.stream`, `.text`)."""
        return self.engine.logs(self.id, follow=follow, tail=tail)

    def wait(self, timeout: float | None = None) -> int | None:
        return self.engine.wait(self.id, timeout)

    def start(self) -> None:
        self.engine.start(self.id)

    def stop(self, timeout: int | None = None) -> None:
        self.engine.stop(self.id, timeout)

    def kill(self, signal: str = "SIGKILL") -> None:
        self.engine.kill(self.id, signal)

    def exec(self, argv: Sequence[str], **options: Any) -> int:
        return self.engine.exec(self.id, list(argv), **options)

    def inspect(self) -> dict[str, Any]:
        return self.engine.inspect(self.id)

    def remove(self, force: bool = False) -> None:
        self.engine.remove(self.id, force=force)


def engine(root: str | Path | None = None, **kw: Any) -> Engine:
    return Engine(root=root, **kw)


def create(image: str, command: Sequence[str] | None = None, *, root: str | Path | None = None,
           **options: Any) -> Container:
    """Create (not start) a container; options are ContainerConfig fields."""
    eng = Engine(root=root)
    config = ContainerConfig(image=image, command=list(command) if command else None)
    config.update(options)
    return Container(eng, eng.create(config).id)


def run(image: str, command: Sequence[str] | None = None, *, detach: bool = False,
        root: str | Path | None = None, **options: Any) -> Container:
    """Create and start a container. Without `detach`, wait for it to exit first."""
    c = create(image, command, root=root, **options)
    try:
        c.start()
    except BaseException:
        c.remove(force=True)
        raise
    if not detach:
        c.wait()
    return c


def containers(all: bool = False, root: str | Path | None = None) -> list[Container]:
    eng = Engine(root=root)
    return [Container(eng, c.id) for c in eng.list(all=all)]


__all__ = ["Container", "containers", "create", "engine", "run"]  # engine(): an Engine
