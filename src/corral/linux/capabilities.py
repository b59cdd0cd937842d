"""Linux capabilities (capabilities(7)): names, the five sets, and applying them.

The OCI config lists capability names per set (`process.capabilities`);
`apply` drops the bounding set, then sets inheritable/permitted/effective
with capset(2), then raises the ambient set, the order runc uses.
"""

from __future__ import annotations

from corral.errors import InvalidArgument, Unavailable

NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: number for number, name in enumerate(NAMES)}
SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


_last_cap: int | None = None  # the kernel's, once read: it cannot change while we run


def last_cap() -> int:
    """The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap = int(f.read())
        except OSError:
            return len(NAMES) - 1
    return _last_cap


def mask(names: list[str], field: str) -> int:
    """Bit mask of `names`; an unknown name is an error naming `field`."""
    bits = 0
    for name in names:
        number = NUMBERS.get(name)
        if number is None:
            raise InvalidArgument(f"{field}: unknown capability {name!r}")
        bits |= 1 << number
    return bits


def validate(capabilities: dict | None) -> None:
    """Check every name in `process.capabilities` before anything is created."""
    for set_name in SETS:
        mask((capabilities or {}).get(set_name) or [], f"process.capabilities.{set_name}")


def host_bounding_set() -> int:
    """The capabilities this process may still hold (its bounding set, from /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return (1 << (last_cap() + 1)) - 1


def check_available(capabilities: dict | None) -> None:
    """Fail, naming the field, if effective, permitted or inheritable asks for a
    capability this process does not hold (one outside the host's bounding set, such
    as CAP_SYS_RESOURCE on a restricted host). capset(2) cannot raise those, and runc
    1.1 fails the same way ("unable to apply caps: operation not permitted"). Such a
    name in `bounding` is just nothing to drop, and in `ambient` it is skipped, as
    runc does. Call it in the container's init (after entering a user namespace,
    which grants a full set) before reporting it ready, so that `create` fails."""
    from corral.linux import syscalls

    if not capabilities:
        return
    # capget, not /proc: the container may have no /proc mounted
    missing_all = ~syscalls.capget()[1] & ((1 << (last_cap() + 1)) - 1)
    for set_name in ("effective", "permitted", "inheritable"):
        field = f"process.capabilities.{set_name}"
        missing = mask(capabilities.get(set_name) or [], field) & missing_all
        if missing:
            names = ", ".join(NAMES[n] for n in range(len(NAMES)) if missing & (1 << n))
            raise Unavailable(f"{field}: {names} cannot be granted: the runtime does not "
                              "hold it (not in this host's capability bounding set)")


def _sets(capabilities: dict) -> dict[str, int]:
    # Names this kernel does not know (above cap_last_cap) are skipped, as runc does.
    known = (1 << (last_cap() + 1)) - 1
    return {name: mask(capabilities.get(name) or [], f"process.capabilities.{name}") & known
            for name in SETS}


def drop_bounding(capabilities: dict) -> None:
    """Drop from the bounding set all that `bounding` omits (needs CAP_SETPCAP, so
    call it before changing uid). A name the host's bounding set already lacks is
    nothing to drop, as in runc."""
    from corral.linux import syscalls

    keep = _sets(capabilities)["bounding"]
    for number in range(last_cap() + 1):
        if not keep & (1 << number):
            try:
                syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)
            except OSError as exc:
                if exc.errno != 22:  # EINVAL: capability not supported by this kernel
                    raise


def apply_sets(capabilities: dict) -> None:
    """Set effective, permitted and inheritable (capset), then raise the ambient set;
    call it after setuid with PR_SET_KEEPCAPS on."""
    from corral.linux import syscalls

    check_available(capabilities)
    sets = _sets(capabilities)
    syscalls.capset(sets["effective"], sets["permitted"], sets["inheritable"])
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    # The kernel only lets a capability into the ambient set if it is both permitted
    # and inheritable; like runc, the others are skipped rather than failing the start.
    ambient = sets["ambient"] & sets["permitted"] & sets["inheritable"]
    for number in range(last_cap() + 1):
        if ambient & (1 << number):
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, number)
