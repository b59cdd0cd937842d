"""Errors -> one line on stderr and a podman-like exit code (the CLI's edge).

podman's conventions: 125 for an error of the tool itself (bad flag, missing
image, unreadable file), 126/127 when the container command cannot be run or
is not found, the container's own exit code otherwise. Some commands narrow
125 like podman's man pages say (`rmi`: 1 no such image, 2 image in use;
`rm`: 1 no such container, 2 container running): they pass `codes`.
"""

from __future__ import annotations

import sys

from corral.errors import CorralError, FailedPrecondition, NotFound

EXIT_ERROR = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class UsageError(CorralError):
    """A command-line mistake (unknown flag value, missing argument)."""


def exit_code(exc: BaseException, codes: dict[type, int] | None = None) -> int:
    status = getattr(exc, "exit_status", None)  # 126/127: the container's command
    if isinstance(status, int):
        return status
    for kind, code in (codes or {}).items():
        if isinstance(exc, kind):
            return code
    return EXIT_ERROR


def message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines())


def report(exc: BaseException) -> None:
    print(f"Error: {message(exc)}", file=sys.stderr)


#: rmi / rm narrowing (podman-rmi(1), podman-rm(1)).
REMOVE_CODES: dict[type, int] = {NotFound: 1, FailedPrecondition: 2}
