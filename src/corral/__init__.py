"""Corral: a Linux container platform written in Python.

Python API (loaded on first use, so `import corral` stays cheap):
`corral.run(image, command, detach=False, root=None, **options)`, `corral.create`,
`corral.containers`, `corral.Container`, `corral.Engine` — see `corral.api`.
"""

__version__ = "0.1.0"

_LAZY = {"run": "corral.api", "create": "corral.api", "containers": "corral.api",
         "Container": "corral.api", "Engine": "corral.engine.engine",
         "ContainerConfig": "corral.engine.config"}

__all__ = ["Container", "ContainerConfig", "Engine", "__version__", "containers", "create",
           "run"]


def __getattr__(name: str) -> object:  # no `typing` here: the runtime's start-up stays lean
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
