"""Linux security modules: AppArmor profiles and SELinux labels (config.md#process,
config-linux.md#mount-label).

`process.apparmorProfile` is applied by writing `exec <profile>` to
/proc/self/attr/apparmor/exec (older kernels: /proc/self/attr/exec), and
`process.selinuxLabel` by writing the label to /proc/self/attr/exec: both take
effect at the next execve. `linux.mountLabel` becomes a `context="<label>"`
mount option. Each is used only where the host has the LSM; otherwise `check`
fails before anything is created, naming the field, so a container never runs
without the confinement its config asked for. (runc 1.1 fails too: it checks
SELinux up front, and fails writing /proc/self/attr/exec for AppArmor and
mounting with context= for the mount label.)

Imported only by `create`/`exec` when a config names one of these fields.
"""

from __future__ import annotations

import os

from corral.errors import InvalidArgument, Unavailable


def apparmor_enabled() -> bool:
    """As runc: securityfs shows apparmor and the module parameter says Y."""
    if not os.path.isdir("/sys/kernel/security/apparmor"):
        return False
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read(1) == "Y"
    except OSError:
        return False


def selinux_enabled() -> bool:
    """selinuxfs is mounted (at /sys/fs/selinux, or the legacy /selinux) and the
    process has a context other than "kernel" (go-selinux's test)."""
    if not any(os.path.exists(os.path.join(path, "enforce"))
               for path in ("/sys/fs/selinux", "/selinux")):
        return False
    try:
        with open("/proc/self/attr/current") as f:
            current = f.read().strip("\x00\n ")
    except OSError:
        return False
    return bool(current) and current != "kernel"


def uses_lsm(process: dict | None, linux: dict | None) -> bool:
    """Whether the config names any LSM field (cheap: decides whether to import us)."""
    return bool((process or {}).get("apparmorProfile") or (process or {}).get("selinuxLabel")
                or (linux or {}).get("mountLabel"))


def check(process: dict | None, linux: dict | None, where: str = "process") -> None:
    """Validate the LSM fields and fail if the host lacks the module they need."""
    process = process or {}
    profile = process.get("apparmorProfile")
    if profile:
        if "\n" in profile or "\x00" in profile or profile != profile.strip():
            raise InvalidArgument(f"{where}.apparmorProfile: {profile!r} is not a valid "
                                  "profile name")
        if not apparmor_enabled():
            raise Unavailable(f"{where}.apparmorProfile: {profile!r} cannot be applied: "
                              "AppArmor is not enabled on this host")
    for field, label in ((f"{where}.selinuxLabel", process.get("selinuxLabel")),
                         ("linux.mountLabel", (linux or {}).get("mountLabel"))):
        if not label:
            continue
        # the mount label goes inside a quoted mount option: no quotes in it
        if label.count(":") < 2 or any(c in label for c in '\n\x00"'):
            raise InvalidArgument(f"{field}: {label!r} is not an SELinux context "
                                  "(user:role:type[:level])")
        if not selinux_enabled():
            raise Unavailable(f"{field}: {label!r} cannot be applied: SELinux is not "
                              "enabled on this host")


def apply_exec_labels(process: dict) -> None:
    """Set the AppArmor profile and SELinux label the next execve switches to. Call it
    in the container (its /proc mounted), before the ids change."""
    profile = process.get("apparmorProfile")
    if profile:
        _write_attr(("/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"),
                    f"exec {profile}", "process.apparmorProfile")
    label = process.get("selinuxLabel")
    if label:
        _write_attr(("/proc/self/attr/exec",), label, "process.selinuxLabel")


def _write_attr(paths: tuple[str, ...], value: str, field: str) -> None:
    error: OSError | None = None
    for path in paths:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            error = exc
            continue
        except OSError as exc:
            raise OSError(exc.errno, f"{field}: cannot open {path}: {exc.strerror}") from None
        try:
            os.write(fd, value.encode())
            return
        except OSError as exc:
            raise OSError(exc.errno, f"{field}: writing {path}: {exc.strerror}") from None
        finally:
            os.close(fd)
    raise OSError(error.errno if error else 2,
                  f"{field}: none of {', '.join(paths)} exists (is /proc mounted?)")
