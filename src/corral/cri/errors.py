"""Corral's error categories → gRPC status codes, at the CRI edge only (STYLE.md:
one mapping table per edge). `grpc_errors` wraps a servicer method so a `NotFound`
becomes NOT_FOUND with the error's message, and an unexpected exception UNKNOWN
with a one-line message (logged with its traceback on the server)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from corral import errors

log = logging.getLogger("corral.cri")


class DeadlineExceeded(errors.CorralError):
    """An ExecSync command ran past its timeout."""


class ExecFailed(errors.CorralError):
    """The runtime could not start an exec'd process (UNKNOWN, as containerd)."""


def status_code(exc: BaseException) -> Any:
    import grpc

    table = (
        (errors.NotFound, grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
        (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
        (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.SystemFailure, grpc.StatusCode.INTERNAL),
    )
    for cls, code in table:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Servicer method decorator: CorralError → context.abort(code, message)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: Any) -> Any:
        try:
            return method(self, request, context)
        except errors.CorralError as exc:
            log.info("%s: %s: %s", method.__name__, type(exc).__name__, exc)
            context.abort(status_code(exc), str(exc) or type(exc).__name__)
        except Exception as exc:  # the edge: a status, never a dropped call
            log.exception("%s failed", method.__name__)
            context.abort(status_code(exc), f"{type(exc).__name__}: {exc}")

    return wrapper
