"""Layer, image and container storage behind one facade (containers/storage in Python).

`Store.open(root)` gives the facade; `corral.storage.drivers` the overlay and vfs
drivers; records and locking are described in corral.storage.store.
"""

from corral.storage.containers import ContainerRecord
from corral.storage.errors import (
    AmbiguousReference,
    ContainerExists,
    ContainerMounted,
    ContainerNotFound,
    DriverMismatch,
    DriverUnavailable,
    ImageInUse,
    ImageNotFound,
    InvalidId,
    LayerInUse,
    LayerMismatch,
    LayerNotFound,
    StorageCorrupt,
)
from corral.storage.images import ImageRecord
from corral.storage.layers import LayerRecord, chain_id
from corral.storage.mount import Mount
from corral.storage.store import DEFAULT_ROOT, Store, default_root

__all__ = [
    "DEFAULT_ROOT", "AmbiguousReference", "ContainerExists", "ContainerMounted",
    "ContainerNotFound", "ContainerRecord", "DriverMismatch", "DriverUnavailable", "ImageInUse",
    "ImageNotFound", "ImageRecord", "InvalidId", "LayerInUse", "LayerMismatch", "LayerNotFound",
    "LayerRecord", "Mount", "StorageCorrupt", "Store", "chain_id", "default_root",
]
