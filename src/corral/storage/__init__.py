"""Layer, image and container storage behind one facade (containers/storage in Python).

`Store.open(root)` gives the facade; `corral.storage.drivers` the overlay and vfs
drivers; records and locking are described in corral.storage.store.

The names below are imported on first use (PEP 562): a small module of the package
(`corral.storage.reservations`) must not cost the whole store's import (~4 ms) on
`corral run`'s path before the monitor is launched (corral.cli.prelaunch).
"""

from __future__ import annotations

import importlib

_ERRORS = ("AmbiguousReference", "ContainerExists", "ContainerMounted", "ContainerNotFound",
           "DriverMismatch", "DriverUnavailable", "ImageInUse", "ImageNotFound", "InvalidId",
           "LayerInUse", "LayerMismatch", "LayerNotFound", "StorageCorrupt")
#: public name -> the module that defines it
_HOMES = {
    **{name: "errors" for name in _ERRORS},
    "ContainerRecord": "containers", "ImageRecord": "images", "LayerRecord": "layers",
    "chain_id": "layers", "Mount": "mount", "DEFAULT_ROOT": "store", "Store": "store",
    "default_root": "store",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'corral.storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"corral.storage.{home}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_HOMES)  # noqa: PLE0605 - built from the table above
