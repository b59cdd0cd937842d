"""An image config turned into an OCI runtime spec (image-spec config.md -> runtime-spec config.md).

What podman/containerd do when they create a container from an image:

- `process.args`: Entrypoint + Cmd; a CLI command replaces Cmd, a CLI entrypoint
  replaces Entrypoint (and then drops the image's Cmd, as docker does);
- `process.env`: the image's Env, then CLI `-e` values (same name: replaced);
  `PATH` gets the default if the image has none, `HOSTNAME` and `TERM` (with a tty)
  are added like podman;
- `process.cwd`: WorkingDir (CLI `-w` wins), default `/`;
- `process.user`: User (CLI `-u` wins) resolved in the image's own /etc/passwd and
  /etc/group, read inside `rootfs` with symlinks confined to it
  (`corral.linux.mounts.secure_join`): `name`, `uid`, `name:group`, `uid:gid`; a
  numeric uid needs no passwd entry; gid defaults to the passwd entry's (0 without
  one); `additionalGids` are the groups listing the user by name (podman);
- mounts, namespaces, masked/readonly paths like podman's defaults (proc, /dev
  tmpfs, devpts, shm, mqueue, sysfs read-only, cgroup read-only; pid, ipc, uts,
  mount, cgroup and network namespaces), podman's default capability set, and
  `noNewPrivileges` false;
- ExposedPorts, Volumes, StopSignal, Labels recorded as annotations
  (`org.opencontainers.image.exposedPorts`, `...volumes`, `...stopSignal`, as
  containerd's image-spec conversion names them); the OCI runtime has no field for them.

The result validates against the runtime spec's JSON schema (`corral.oci.schema`)
and `corral.oci.runtime_config.check_semantics`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from corral.errors import InvalidArgument, NotFound
from corral.oci.image import ImageConfig
from corral.oci.runtime_config import OCI_VERSION

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: podman's default capabilities (containers.conf default_capabilities).
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT",
]

MASKED_PATHS = ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/fs/selinux", "/sys/dev/block"]
READONLY_PATHS = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                  "/proc/sysrq-trigger"]

ANNOTATION_PORTS = "org.opencontainers.image.exposedPorts"
ANNOTATION_VOLUMES = "org.opencontainers.image.volumes"
ANNOTATION_STOP_SIGNAL = "org.opencontainers.image.stopSignal"


class UserNotFound(NotFound):
    """The user or group named for the process is not in the image's /etc/passwd or /etc/group."""


class NoCommand(InvalidArgument):
    """Neither the image nor the command line says what to run."""


def _read_in_root(rootfs: Path, path: str) -> str | None:
    """The text of `path` inside `rootfs` (symlinks stay inside), or None if absent."""
    from corral.linux.mounts import secure_join

    real = secure_join(str(rootfs), path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError, OSError):
        return None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(4 << 20).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _entries(text: str | None, fields: int) -> list[list[str]]:
    out = []
    for line in (text or "").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields:
            out.append(parts)
    return out


def _uint(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        if value < 2**32 - 1:
            return value
    return None


def resolve_user(rootfs: Path, user: str) -> dict:
    """The OCI `process.user` for an image/CLI user string (see the module docstring)."""
    user = user.strip()
    if not user:
        return {"uid": 0, "gid": 0}
    name, sep, group = user.partition(":")
    if sep and not group:
        raise InvalidArgument(f"user {user!r}: empty group after ':'")
    passwd = _entries(_read_in_root(rootfs, "/etc/passwd"), 7)
    groups = _entries(_read_in_root(rootfs, "/etc/group"), 4)
    uid = _uint(name)
    username: str | None = None
    gid: int | None = None
    if uid is None:
        for entry in passwd:
            if entry[0] == name:
                uid, gid, username = _uint(entry[2]), _uint(entry[3]), name
                break
        if uid is None:
            raise UserNotFound(f"user {name!r} not found in the image's /etc/passwd")
    else:
        for entry in passwd:
            if _uint(entry[2]) == uid:
                gid, username = _uint(entry[3]), entry[0]
                break
    if sep:
        gid = _uint(group)
        if gid is None:
            for entry in groups:
                if entry[0] == group:
                    gid = _uint(entry[2])
                    break
            if gid is None:
                raise UserNotFound(f"group {group!r} not found in the image's /etc/group")
    if gid is None:
        gid = 0
    result: dict = {"uid": uid, "gid": gid}
    if username is not None:
        extra = sorted({g for entry in groups
                        if username in entry[3].split(",") and (g := _uint(entry[2])) is not None
                        and g != gid})
        if extra:
            result["additionalGids"] = extra
    return result


def _merge_env(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    env: dict[str, str] = {}
    for item in list(base) + list(extra):
        name, eq, value = item.partition("=")
        if not name:
            raise InvalidArgument(f"environment variable {item!r}: empty name")
        if not eq:
            host = os.environ.get(name)
            if host is None:
                continue  # `-e NAME` with NAME unset on the host: skipped (docker)
            value = host
        env[name] = value
    return [f"{k}={v}" for k, v in env.items()]


def default_mounts() -> list[dict]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def spec_for(config: ImageConfig, rootfs: Path | str, *,
             command: Sequence[str] | None = None,
             entrypoint: Sequence[str] | None = None,
             env: Sequence[str] = (),
             workdir: str | None = None,
             user: str | None = None,
             terminal: bool = False,
             hostname: str | None = None,
             root_path: str | None = None,
             readonly: bool = False,
             network: str = "private",
             annotations: Mapping[str, str] | None = None) -> dict:
    """The OCI runtime config for a container of `config` whose root is `rootfs`.

    `command` replaces Cmd; `entrypoint` replaces Entrypoint (an empty list clears
    it) and drops the image's Cmd. `root_path` is the spec's `root.path` (default:
    `rootfs` itself). `network="host"` keeps the host's network namespace.
    """
    rootfs = Path(rootfs)
    image_entrypoint = list(config.entrypoint or [])
    image_cmd = list(config.cmd or [])
    if entrypoint is not None:
        image_entrypoint = list(entrypoint)
        image_cmd = []
    cmd = list(command) if command else image_cmd
    args = image_entrypoint + cmd
    if not args:
        raise NoCommand("no command: the image has no Entrypoint or Cmd, and none was given")

    base_env = config.env
    if not any(e.startswith("PATH=") for e in base_env) and \
            not any(e.startswith("PATH=") for e in env):
        base_env = [DEFAULT_PATH] + list(base_env)
    extra_env = list(env)
    if terminal and not any(e.startswith("TERM=") for e in base_env + extra_env):
        extra_env.append("TERM=xterm")
    hostname = hostname or "corral"
    process_env = _merge_env(base_env + [f"HOSTNAME={hostname}"], extra_env)

    cwd = workdir or config.working_dir or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"working directory {cwd!r} is not an absolute path")
    process_user = resolve_user(rootfs, user if user is not None else config.user)

    caps = list(DEFAULT_CAPABILITIES)
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # podman's default (1048576), capped by what this process may grant without privilege
    nofile = 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if network != "host":
        namespaces.insert(1, {"type": "network"})
    notes: dict[str, str] = {}
    if config.exposed_ports:
        notes[ANNOTATION_PORTS] = ",".join(sorted(config.exposed_ports))
    if config.volumes:
        notes[ANNOTATION_VOLUMES] = ",".join(sorted(config.volumes))
    if config.stop_signal:
        notes[ANNOTATION_STOP_SIGNAL] = config.stop_signal
    for key, value in config.labels.items():
        notes.setdefault(key, value)
    notes.update(annotations or {})

    spec: dict = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": process_user,
            "args": args,
            "env": process_env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": list(caps),
                             "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": root_path or str(rootfs), "readonly": readonly},
        "hostname": hostname,
        "mounts": default_mounts(),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if network == "host":
        spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "sysfs"] + [
            {"destination": "/sys", "type": "bind", "source": "/sys",
             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    if notes:
        spec["annotations"] = notes
    return spec


def validate(spec: dict) -> None:
    """Raise InvalidArgument if `spec` does not match the runtime spec (schema + semantics)."""
    from corral.oci import schema
    from corral.oci.runtime_config import check_semantics

    schema.validate(spec, "config-schema.json")
    check_semantics(spec)


__all__ = ["ANNOTATION_PORTS", "ANNOTATION_STOP_SIGNAL", "ANNOTATION_VOLUMES",
           "DEFAULT_CAPABILITIES", "NoCommand", "UserNotFound", "resolve_user", "spec_for",
           "validate"]
