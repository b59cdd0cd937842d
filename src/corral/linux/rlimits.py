"""POSIX resource limits (setrlimit(2)) named as in the OCI config (`RLIMIT_NOFILE`)."""

from __future__ import annotations

from corral.errors import InvalidArgument, Unavailable

NUMBERS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
_INFINITY = 2**64 - 1


def number(name: str, field: str) -> int:
    try:
        return NUMBERS[name]
    except KeyError:
        raise InvalidArgument(f"{field}: unknown resource limit {name!r}") from None


def apply(limits: list[dict]) -> None:
    """Set each limit; one the host forbids is an Unavailable error naming it."""
    import resource

    for limit in limits:
        soft = -1 if limit["soft"] >= _INFINITY else limit["soft"]
        hard = -1 if limit["hard"] >= _INFINITY else limit["hard"]
        try:
            resource.setrlimit(NUMBERS[limit["type"]], (soft, hard))
        except (ValueError, OSError) as exc:
            current = resource.getrlimit(NUMBERS[limit["type"]])
            raise Unavailable(
                f"process.rlimits {limit['type']}: cannot set soft={limit['soft']} "
                f"hard={limit['hard']} (host allows hard={_show(current[1])}; raising a hard "
                f"limit needs CAP_SYS_RESOURCE): {exc}") from None


def _show(value: int) -> str:
    return "unlimited" if value < 0 else str(value)
