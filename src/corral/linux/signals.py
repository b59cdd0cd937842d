"""Signal names and numbers (signal(7)), without the `signal` module's enum import."""

from __future__ import annotations

from corral.errors import InvalidArgument

NUMBERS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}
SIGRTMIN = 34
SIGRTMAX = 64


def parse(text: str) -> int:
    """`TERM`, `SIGTERM`, `15`, `SIGRTMIN+3` -> signal number; anything else is an error."""
    value = text.strip().upper()
    if value.isdigit():
        number = int(value)
        if 0 <= number <= SIGRTMAX:  # 0: only check the process exists, as runc allows
            return number
        raise InvalidArgument(f"signal {text!r}: out of range 0-{SIGRTMAX}")
    value = value.removeprefix("SIG")
    if value in NUMBERS:
        return NUMBERS[value]
    for base, origin, sign in (("RTMIN", SIGRTMIN, 1), ("RTMAX", SIGRTMAX, -1)):
        if value == base:
            return origin
        if value.startswith(base + ("+" if sign > 0 else "-")):
            offset = value[len(base) + 1:]
            if offset.isdigit() and SIGRTMIN <= origin + sign * int(offset) <= SIGRTMAX:
                return origin + sign * int(offset)
    raise InvalidArgument(f"unknown signal {text!r}")
