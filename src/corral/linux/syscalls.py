"""The kernel calls the standard library lacks, through libc (`corral.linux.libc`).

This is the one place in Corral that calls libc for the runtime (through
`_ctypes` directly: `import ctypes` would cost every create ~3 ms). Every wrapper raises
OSError with errno set and the path or argument in the message, so a failure
reads like ``mount('proc' -> '/proc', type 'proc'): Operation not permitted``.
Constants are the x86_64/aarch64 Linux values from <sched.h>, <sys/mount.h>,
<linux/prctl.h> and <linux/capability.h>.
"""

from __future__ import annotations

import os
import sys

from corral.linux import libc

_libc = libc.Library(None)

# clone(2) / unshare(2) namespace flags.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# The syscall numbers we call directly (glibc has no wrapper for these).
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "capget": 125, "close_range": 436,
               "pidfd_send_signal": 424, "keyctl": 250, "seccomp": 317},
    "aarch64": {"pivot_root": 41, "capset": 91, "capget": 90, "close_range": 436,
                "pidfd_send_signal": 424, "keyctl": 219, "seccomp": 277},
}[os.uname().machine]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = libc.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _path(value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    return os.fsencode(value)


_libc.mount.argtypes = [libc.c_char_p, libc.c_char_p, libc.c_char_p, libc.c_ulong,
                        libc.c_char_p]
_libc.umount2.argtypes = [libc.c_char_p, libc.c_int]
_libc.unshare.argtypes = [libc.c_int]
_libc.setns.argtypes = [libc.c_int, libc.c_int]
_libc.sethostname.argtypes = [libc.c_char_p, libc.c_size_t]
_libc.setdomainname.argtypes = [libc.c_char_p, libc.c_size_t]
_libc.prctl.argtypes = [libc.c_int, libc.c_ulong, libc.c_ulong, libc.c_ulong,
                        libc.c_ulong]
_libc.syscall.restype = libc.c_long


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2)."""
    result = _libc.mount(_path(source), _path(target), _path(fstype), flags,
                         data.encode() if data else None)
    if result < 0:
        err = libc.get_errno()
        detail = f"mount({source!r} -> {target!r}, type {fstype!r}, flags {flags:#x}"
        detail += f", data {data!r})" if data else ")"
        raise OSError(err, f"{detail}: {os.strerror(err)}", target)


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_path(target), flags), f"umount({target!r})")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make `new_root` the root, moving the old one to `put_old`."""
    _check(_libc.syscall(_SYSCALLS["pivot_root"], _path(new_root), _path(put_old)),
           f"pivot_root({new_root!r}, {put_old!r})")


def unshare(flags: int) -> None:
    """unshare(2): needs a single-threaded caller for user and mount namespaces."""
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int, what: str = "") -> None:
    """setns(2) into the namespace open at `fd`."""
    _check(_libc.setns(fd, nstype), f"setns({what or fd})")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname({name!r})")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), f"setdomainname({name!r})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    """close_range(2); CLOSE_RANGE_CLOEXEC is flag 4."""
    _check(_libc.syscall(_SYSCALLS["close_range"], libc.c_uint(first), libc.c_uint(last),
                         libc.c_uint(flags)), "close_range")


KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): a new session keyring called `name`."""
    return _check(_libc.syscall(_SYSCALLS["keyctl"], KEYCTL_JOIN_SESSION_KEYRING,
                                name.encode()), f"keyctl(join {name!r})")


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _check(_libc.syscall(_SYSCALLS["pidfd_send_signal"], pidfd, sig, None, 0),
           f"pidfd_send_signal({sig})")


class _CapHeader(libc.Structure):
    _fields_ = (("version", libc.c_uint32), ("pid", libc.c_int))


class _CapData(libc.Structure):
    _fields_ = (("effective", libc.c_uint32), ("permitted", libc.c_uint32),
                ("inheritable", libc.c_uint32))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread; each set is a 64-bit mask."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in range(2):
        shift = 32 * index
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(_SYSCALLS["capset"], libc.byref(header), data), "capset")


def capget() -> tuple[int, int, int]:
    """capget(2): (effective, permitted, inheritable) of the calling thread."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_SYSCALLS["capget"], libc.byref(header), data), "capget")
    sets = []
    for field in ("effective", "permitted", "inheritable"):
        sets.append(getattr(data[0], field) | (getattr(data[1], field) << 32))
    return sets[0], sets[1], sets[2]


# clone3(2) with CLONE_INTO_CGROUP: a fork whose child starts in a cgroup v2 directory.
_CLONE_INTO_CGROUP = 0x200000000
_CLONE_CHILD_SETTID = 0x01000000
_CLONE_CHILD_CLEARTID = 0x00200000
_SYS_CLONE3 = 435
_SYS_GETTID = {"x86_64": 186, "aarch64": 178}[os.uname().machine]


class _CloneArgs(libc.Structure):
    _fields_ = tuple((name, libc.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup"))


# (pthread_self(), the field's address) once found: the descriptor of a thread stays
# where it is, also in a forked child (the same address space, copied)
_tid_field: tuple[int, int] = (0, 0)


def _glibc_tid_field() -> int:
    """Address of glibc's cached tid in this thread's `struct pthread`.

    glibc's fork() asks the kernel to store the child's tid there
    (CLONE_CHILD_SETTID); a raw clone3 must do the same or the child's glibc
    would keep the parent's tid. The field is found by its value, and only
    trusted if exactly one word of the descriptor holds our tid.
    """
    global _tid_field
    _libc.pthread_self.restype = libc.c_void_p
    base = _libc.pthread_self()
    if _tid_field[0] == base:
        return _tid_field[1]
    tid = _libc.syscall(_SYS_GETTID)
    words = (libc.c_int * 512).from_address(base)[:]  # the first 0x800 bytes, one copy
    hits = [index for index, word in enumerate(words) if word == tid]
    if len(hits) != 1:
        raise OSError(38, "clone3: cannot locate glibc's thread id field")
    _tid_field = (base, base + 4 * hits[0])
    return _tid_field[1]


_python_api: libc.Library | None = None  # ctypes.pythonapi, made once


def fork_into_cgroup(cgroup_fd: int) -> int:
    """fork(), with the child born in the cgroup v2 directory open at `cgroup_fd`.

    Writing a pid to cgroup.procs makes the kernel wait for an RCU grace period
    (several ms); CLONE_INTO_CGROUP places the child during fork instead. Python's
    own fork bookkeeping (PyOS_BeforeFork/AfterFork_*) runs as in os.fork().
    Raises OSError (e.g. ENOSYS, EACCES) so callers can fall back to os.fork().
    """
    args = _CloneArgs(flags=_CLONE_INTO_CGROUP | _CLONE_CHILD_SETTID | _CLONE_CHILD_CLEARTID,
                      exit_signal=17, cgroup=cgroup_fd, child_tid=_glibc_tid_field())
    api = _python()
    api.PyOS_BeforeFork()
    pid = _libc.syscall(_SYS_CLONE3, libc.byref(args), libc.sizeof(args))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = libc.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone3(CLONE_INTO_CGROUP): {os.strerror(err)}")
    return pid


def _python() -> libc.Library:
    global _python_api
    if _python_api is None:
        _python_api = libc.Library(None, python_api=True)
    return _python_api


def prepare_fork_into_cgroup() -> None:
    """Do now what fork_into_cgroup does on its first call (the runtime's await path)."""
    _glibc_tid_field()
    api = _python()
    for name in ("PyOS_BeforeFork", "PyOS_AfterFork_Child", "PyOS_AfterFork_Parent"):
        getattr(api, name)


def set_loopback_up() -> None:
    """Bring `lo` up in the calling process's network namespace (SIOCSIFFLAGS), as
    runc does for every new one. A socket fd from libc: no `socket` module import."""
    import fcntl

    fd = _libc.socket(2, 2 | 0o2000000, 0)  # AF_INET, SOCK_DGRAM | SOCK_CLOEXEC
    if fd < 0:
        err = libc.get_errno()
        raise OSError(err, f"socket(AF_INET): {os.strerror(err)}")
    try:
        # struct ifreq (40 bytes): ifr_name[16], then ifr_flags, a native-endian short
        name = b"lo".ljust(16, b"\0")
        reply = fcntl.ioctl(fd, 0x8913, name + bytes(24))  # SIOCGIFFLAGS
        flags = int.from_bytes(reply[16:18], sys.byteorder) | 1  # IFF_UP
        fcntl.ioctl(fd, 0x8914, name + flags.to_bytes(2, sys.byteorder) + bytes(22))  # SIOCSIFFLAGS
    except OSError as exc:
        raise OSError(exc.errno, f"network namespace: cannot bring lo up: {exc.strerror}") from None
    finally:
        os.close(fd)


class _SockFprog(libc.Structure):
    """struct sock_fprog (linux/filter.h): a classic BPF program."""

    _fields_ = (("len", libc.c_ushort), ("filter", libc.c_void_p))


SECCOMP_SET_MODE_FILTER = 1


def seccomp_set_mode_filter(program: bytes, flags: int) -> int:
    """seccomp(2) SECCOMP_SET_MODE_FILTER with `program`, an array of struct sock_filter
    (8 bytes each). Returns the listener fd with SECCOMP_FILTER_FLAG_NEW_LISTENER."""
    buffer = (libc.c_char * len(program)).from_buffer_copy(program)
    fprog = _SockFprog(len(program) // 8, libc.addressof(buffer))
    return _check(_libc.syscall(_SYSCALLS["seccomp"], SECCOMP_SET_MODE_FILTER,
                                libc.c_uint(flags), libc.byref(fprog)), "seccomp")
