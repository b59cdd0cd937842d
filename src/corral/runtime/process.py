"""The container process (config.md#process): the last steps before execve.

Shared by the container's init and by `exec`. The order follows runc's
finalize: look the program up, rlimits, no_new_privs, the bounding set,
keep-caps, groups and ids, the remaining capability sets, umask, cwd, fds, exec.
"""

from __future__ import annotations

import os

from corral.errors import InvalidArgument, Unavailable
from corral.linux import capabilities as caps
from corral.linux import rlimits
from corral.linux import syscalls as sc


class ExecError(InvalidArgument):
    pass


def env_path(env: list[str]) -> str:
    for item in env:
        if item.startswith("PATH="):
            return item[5:]
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def look_path(program: str, env: list[str]) -> str:
    """Find `program` like exec.LookPath: a name with a slash is used as given."""
    if "/" in program:
        if not os.path.exists(program):
            raise ExecError(f"exec: {program!r}: no such file or directory")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise ExecError(f"exec: {program!r}: permission denied")
        return program
    for directory in env_path(env).split(":"):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ExecError(f"exec: {program!r}: executable file not found in $PATH")


def set_oom_score_adj(pid: int | str, value: int) -> None:
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(value))
    except PermissionError:
        raise Unavailable(f"process.oomScoreAdj: cannot set {value} (lowering it needs "
                          "CAP_SYS_RESOURCE, which this host does not grant)") from None


def apply_user_and_capabilities(process: dict) -> None:
    """rlimits, no_new_privs, ids and capabilities, in the order the kernel needs."""
    if process.get("rlimits"):
        rlimits.apply(process["rlimits"])
    if process.get("noNewPrivileges"):
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    capabilities = process.get("capabilities")
    if capabilities is not None:
        caps.drop_bounding(capabilities)
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(user.get("additionalGids") or [])
    except PermissionError:
        # setgroups is denied in a user namespace with "deny" in /proc/self/setgroups.
        if user.get("additionalGids"):
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if capabilities is not None:
        caps.apply_sets(capabilities)
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    if "umask" in user:
        os.umask(user["umask"])
    else:
        os.umask(0o022)


def change_dir(cwd: str) -> None:
    """chdir into the container's cwd and prove it is inside the container's root.

    A cwd reached through a leaked host fd (/proc/self/fd/N, CVE-2024-21626) would
    leave the process outside its root; the kernel then reports "(unreachable)".
    """
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise ExecError(f"process.cwd: cannot enter {cwd!r}: {exc.strerror}") from None
    try:
        where = os.getcwd()
    except OSError:
        where = "(unreachable)"
    if not where.startswith("/"):
        raise ExecError(f"process.cwd: {cwd!r} resolves outside the container")


def close_inherited_fds(keep_through: int) -> None:
    """Mark every fd above `keep_through` close-on-exec (CLOSE_RANGE_CLOEXEC)."""
    try:
        sc.close_range(keep_through + 1, 0xFFFFFFFF, 4)
    except OSError:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > keep_through:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass


def execute(program: str, process: dict) -> None:
    os.execve(program, process["args"], _env_dict(process.get("env") or []))


def _env_dict(env: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        result[key] = value
    return result
