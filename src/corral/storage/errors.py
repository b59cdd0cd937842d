"""Storage errors: each subclasses a category of corral.errors and names the id or path."""

from __future__ import annotations

from corral.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SystemFailure,
    Unavailable,
)


class LayerNotFound(NotFound):
    """No layer with that chain id."""


class ImageNotFound(NotFound):
    """No image with that name, id or digest."""


class ContainerNotFound(NotFound):
    """No container with that id or name."""


class ContainerExists(AlreadyExists):
    """A container with that id or name exists already."""


class AmbiguousReference(InvalidArgument):
    """A short id matches more than one object."""


class InvalidId(InvalidArgument):
    """An id that cannot name a layer, image or container (it would not be a safe path)."""


class LayerMismatch(InvalidArgument):
    """A layer's content does not match the diff id it was announced with."""


class LayerInUse(FailedPrecondition):
    """A layer still has users (images, containers, child layers)."""


class ImageInUse(FailedPrecondition):
    """An image is still used by containers."""


class ContainerMounted(FailedPrecondition):
    """A container's rootfs is still mounted."""


class DriverMismatch(FailedPrecondition):
    """The store was made with another driver than the one asked for."""


class DriverUnavailable(Unavailable):
    """The host cannot run the storage driver (e.g. no overlayfs)."""


class StorageCorrupt(SystemFailure):
    """A record file cannot be read."""
