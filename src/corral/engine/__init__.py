"""The engine: containers' lifecycle, monitor (conmon), logs, exec/attach, records.

`Engine` is the facade (docs/design/engine.md); heavy modules load on first use so
`import corral.engine` stays cheap.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any


_EXPORTS = {
    "Engine": "corral.engine.engine", "Container": "corral.engine.engine",
    "State": "corral.engine.engine", "ContainerConfig": "corral.engine.config",
    "RestartPolicy": "corral.engine.config",
}

__all__ = ["Container", "ContainerConfig", "Engine", "RestartPolicy", "State"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'corral.engine' has no attribute {name!r}")
