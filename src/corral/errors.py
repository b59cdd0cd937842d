"""Error categories shared by every layer (containerd's errdefs, in Python).

Each module subclasses a category; the edges (CLI exit codes, HTTP, gRPC)
map categories, never individual classes.
"""

from __future__ import annotations


class CorralError(Exception):
    """Base of every error Corral raises on purpose."""


class NotFound(CorralError):
    """The named object (container, image, path) does not exist."""


class AlreadyExists(CorralError):
    """An object with that id or name exists already."""


class InvalidArgument(CorralError):
    """The caller's input is malformed: a field, id, flag or file."""


class FailedPrecondition(CorralError):
    """The object is in the wrong state for the operation."""


class Unavailable(CorralError):
    """The host lacks a feature or permission the operation needs."""


class SystemFailure(CorralError):
    """A kernel or external call failed unexpectedly."""
