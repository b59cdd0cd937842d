"""Parsers for `run`/`create` option values, shared by the CLI and the spec builder.

The container's record (`corral.engine.config.ContainerConfig`) keeps what the user
typed (`-v` strings, `--mount` strings, `--ulimit nofile=1:2`, ...); these functions
turn each into a typed value with docker's/podman's syntax and an `InvalidArgument`
naming the flag for anything wrong. No side effects: paths are checked by the spec
builder, volumes created by `corral.engine.volumes`.

- sizes (`--memory 512m`, `--shm-size 1g`, `tmpfs-size`): a number with an optional
  b/k/m/g/t suffix (binary units, as docker's units.RAMInBytes);
- `-v SRC:DST[:OPTS]` (SRC absolute or ./relative: a bind mount; a name: a named
  volume; `-v DST` alone: an anonymous volume), `--mount type=...,k=v`,
  `--tmpfs DST[:OPTS]` → `MountSpec`;
- `--ulimit name=soft[:hard]` (-1: unlimited) → (RLIMIT_NAME, soft, hard);
- `--device HOST[:CONTAINER][:PERMS]` → `DeviceSpec`;
- `--security-opt` → `SecurityOptions`; `--cap-add/--cap-drop` names (with or
  without CAP_, any case, ALL); `--sysctl k=v`; `--label k=v`; `--env-file` lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from corral.errors import InvalidArgument, NotFound

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
UNLIMITED = 2**64 - 1  # RLIM_INFINITY in the OCI spec's uint64

#: propagation and per-mount flags accepted after `-v ...:` (docker/podman)
_PROPAGATION = ("shared", "rshared", "slave", "rslave", "private", "rprivate",
                "unbindable", "runbindable")
_FLAGS = ("noexec", "exec", "nosuid", "suid", "nodev", "dev", "atime", "noatime",
          "relatime", "strictatime", "nodiratime", "diratime", "sync", "async")


def parse_size(text: str | int, flag: str = "size") -> int:
    """`512m` → 536870912. Binary units (k, m, g, t, p; optional trailing b)."""
    if isinstance(text, int):
        return text
    value = text.strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", value)
    if not match:
        raise InvalidArgument(f"{flag}: invalid size {text!r} (use e.g. 512m, 1g, 65536k)")
    number = float(match.group(1)) * _UNITS[match.group(2)]
    return int(number)


def parse_cpus(text: str | float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"--cpus: invalid number {text!r}") from None
    if not value > 0 or value > 1 << 20:
        raise InvalidArgument(f"--cpus: {text!r} must be a positive number of CPUs")
    return value


def normalize_capability(name: str, flag: str = "capability") -> str:
    """`net_admin` → `CAP_NET_ADMIN`; `all` → `ALL`; unknown names are errors."""
    from corral.linux.capabilities import NAMES

    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in NAMES:
        raise InvalidArgument(f"{flag}: unknown capability {name!r}")
    return full


def merge_capabilities(base: Iterable[str], add: Iterable[str], drop: Iterable[str],
                       all_caps: Sequence[str]) -> list[str]:
    """podman's rule: `--cap-add ALL` starts from every capability, `--cap-drop ALL`
    from none; then the named additions and drops (a cap in both: dropped wins only
    when ALL is not added)."""
    add_set = [normalize_capability(c, "--cap-add") for c in add]
    drop_set = [normalize_capability(c, "--cap-drop") for c in drop]
    if "ALL" in add_set:
        caps = list(all_caps)
        return [c for c in caps if c not in drop_set]
    if "ALL" in drop_set:
        return list(dict.fromkeys(add_set))
    return [c for c in dict.fromkeys(list(base) + add_set) if c not in drop_set]


# -- mounts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MountSpec:
    """One user mount: `type` bind|volume|tmpfs; `source` a host path (bind), a volume
    name (volume; None: anonymous), or None (tmpfs)."""
    type: str
    destination: str
    source: str | None = None
    readonly: bool = False
    options: tuple[str, ...] = ()
    nocopy: bool = False
    #: the flag it came from, for messages
    origin: str = "-v"


def _check_destination(dest: str, flag: str) -> str:
    if not dest.startswith("/"):
        raise InvalidArgument(f"{flag}: destination {dest!r} is not an absolute path")
    norm = os.path.normpath(dest)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm == "/":
        raise InvalidArgument(f"{flag}: cannot mount over the container's root '/'")
    return norm


def _is_path(source: str) -> bool:
    return source.startswith(("/", "./", "../")) or source in (".", "..")


def _check_volume_name(name: str, flag: str) -> str:
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise InvalidArgument(f"{flag}: {name!r} is neither an absolute path nor a valid "
                              "volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    return name


def parse_volume(text: str, cwd: str | None = None) -> MountSpec:
    """`-v SRC:DST[:OPTS]`, `-v NAME:DST[:OPTS]`, `-v DST` (anonymous volume)."""
    flag = f"-v {text}"
    parts = text.split(":")
    if not text or len(parts) > 3 or any(p == "" for p in parts[:2]):
        raise InvalidArgument(f"{flag}: expected SRC:DST[:OPTIONS] or DST")
    if len(parts) == 1:
        return MountSpec("volume", _check_destination(parts[0], flag), None, origin="-v")
    source, dest = parts[0], parts[1]
    opts = [o for o in (parts[2].split(",") if len(parts) == 3 else []) if o]
    readonly = False
    extra: list[str] = []
    nocopy = False
    seen_mode = False
    for opt in opts:
        if opt in ("ro", "rw"):
            if seen_mode:
                raise InvalidArgument(f"{flag}: ro/rw given twice")
            seen_mode = True
            readonly = opt == "ro"
        elif opt in ("z", "Z"):
            continue  # SELinux relabel: nothing to do without SELinux
        elif opt in _PROPAGATION or opt in _FLAGS or opt in ("bind", "rbind"):
            extra.append(opt)
        elif opt == "nocopy":
            nocopy = True
        elif opt in ("copy",):
            nocopy = False
        else:
            raise InvalidArgument(f"{flag}: unknown volume option {opt!r}")
    dest = _check_destination(dest, flag)
    if _is_path(source):
        base = cwd or os.getcwd()
        path = os.path.normpath(os.path.join(base, source))
        if nocopy:
            raise InvalidArgument(f"{flag}: nocopy applies to named volumes only")
        return MountSpec("bind", dest, path, readonly, tuple(extra), origin="-v")
    _check_volume_name(source, flag)
    return MountSpec("volume", dest, source, readonly, tuple(extra), nocopy, origin="-v")


def _bool(value: str, flag: str) -> bool:
    if value.lower() in ("", "1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise InvalidArgument(f"{flag}: expected true or false, got {value!r}")


def parse_tmpfs(text: str) -> MountSpec:
    """`--tmpfs DST[:OPT,OPT]`: options as mount(8) tmpfs options (size=64m, mode=1777,
    exec, ...); podman's defaults rw,noexec,nosuid,nodev unless overridden."""
    flag = f"--tmpfs {text}"
    dest, _, opts = text.partition(":")
    dest = _check_destination(dest, flag)
    options, readonly = _tmpfs_options([o for o in opts.split(",") if o], flag)
    return MountSpec("tmpfs", dest, None, readonly, tuple(options), origin="--tmpfs")


def _tmpfs_options(opts: list[str], flag: str) -> tuple[list[str], bool]:
    readonly = False
    out: list[str] = []
    for opt in opts:
        key, eq, value = opt.partition("=")
        if opt in ("ro", "rw"):
            readonly = opt == "ro"
        elif key == "size" and eq:
            out.append(f"size={parse_size(value, flag)}")
        elif key == "mode" and eq:
            if not re.fullmatch(r"[0-7]{1,4}", value):
                raise InvalidArgument(f"{flag}: mode {value!r} is not octal")
            out.append(opt)
        elif key in ("uid", "gid", "nr_inodes", "nr_blocks") and eq:
            if not value.isdigit():
                raise InvalidArgument(f"{flag}: {key} must be a number")
            out.append(opt)
        elif opt in _FLAGS or opt in _PROPAGATION or opt in ("tmpcopyup", "notmpcopyup"):
            if opt not in ("tmpcopyup", "notmpcopyup"):
                out.append(opt)
        else:
            raise InvalidArgument(f"{flag}: unknown tmpfs option {opt!r}")
    return out, readonly


def parse_mount(text: str, cwd: str | None = None) -> MountSpec:
    """`--mount type=bind|volume|tmpfs,source=...,target=...,readonly,...` (docker)."""
    flag = f"--mount {text}"
    fields: dict[str, str] = {}
    flags_: list[str] = []
    for item in text.split(","):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key in fields and key not in ("tmpfs-option",):
            raise InvalidArgument(f"{flag}: {key} given twice")
        if not eq:
            flags_.append(key)
            fields[key] = "true"
        else:
            fields[key] = value
    kind = fields.pop("type", "volume")
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f"{flag}: type {kind!r} is not supported (bind, volume, tmpfs)")
    source = fields.pop("source", None) or fields.pop("src", None)
    fields.pop("source", None), fields.pop("src", None)
    dest = None
    for key in ("target", "destination", "dst"):
        if key in fields:
            dest = fields.pop(key)
    if not dest:
        raise InvalidArgument(f"{flag}: no target (target=/path)")
    dest = _check_destination(dest, flag)
    readonly = False
    for key in ("readonly", "ro"):
        if key in fields:
            readonly = _bool(fields.pop(key), flag)
    if "rw" in fields:
        readonly = not _bool(fields.pop("rw"), flag)
    options: list[str] = []
    nocopy = False
    if kind == "bind":
        if not source:
            raise InvalidArgument(f"{flag}: a bind mount needs source=/host/path")
        source = os.path.normpath(os.path.join(cwd or os.getcwd(), source))
        if "bind-propagation" in fields:
            prop = fields.pop("bind-propagation")
            if prop not in _PROPAGATION:
                raise InvalidArgument(f"{flag}: bind-propagation {prop!r} is not valid")
            options.append(prop)
        if "bind-nonrecursive" in fields and _bool(fields.pop("bind-nonrecursive"), flag):
            options.append("bind")
        fields.pop("consistency", None)
        for key in ("z", "relabel"):
            fields.pop(key, None)
    elif kind == "volume":
        if source is not None:
            _check_volume_name(source, flag)
        if "volume-nocopy" in fields:
            nocopy = _bool(fields.pop("volume-nocopy"), flag)
        if "volume-opt" in fields or "volume-driver" in fields:
            raise InvalidArgument(f"{flag}: volume drivers and volume-opt are not supported")
        fields.pop("volume-label", None)
    else:
        if source:
            raise InvalidArgument(f"{flag}: a tmpfs mount takes no source")
        raw = []
        if "tmpfs-size" in fields:
            raw.append("size=" + fields.pop("tmpfs-size"))
        if "tmpfs-mode" in fields:
            raw.append("mode=" + fields.pop("tmpfs-mode"))
        if "tmpfs-option" in fields:
            raw.append(fields.pop("tmpfs-option"))
        options, ro = _tmpfs_options(raw, flag)
        readonly = readonly or ro
    for key in list(fields):
        if key in _FLAGS:
            fields.pop(key)
            options.append(key)
    if fields:
        raise InvalidArgument(f"{flag}: unknown field(s) " + ", ".join(sorted(fields)))
    return MountSpec(kind, dest, source, readonly, tuple(options), nocopy, origin="--mount")


# -- devices, ulimits, sysctls, labels, env -------------------------------------------------


@dataclass(frozen=True)
class DeviceSpec:
    host: str
    container: str
    permissions: str = "rwm"


def parse_device(text: str) -> DeviceSpec:
    """`--device /dev/x[:/dev/y][:rwm]`."""
    flag = f"--device {text}"
    parts = text.split(":")
    if not parts[0] or len(parts) > 3:
        raise InvalidArgument(f"{flag}: expected HOST[:CONTAINER][:PERMISSIONS]")
    host = parts[0]
    container = host
    perms = "rwm"
    if len(parts) == 2:
        if re.fullmatch(r"[rwm]+", parts[1]):
            perms = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, perms = parts[1], parts[2]
    if not re.fullmatch(r"[rwm]{1,3}", perms):
        raise InvalidArgument(f"{flag}: permissions {perms!r} are not a combination of r, w, m")
    if not host.startswith("/") or not container.startswith("/dev/"):
        raise InvalidArgument(f"{flag}: paths must be absolute (container side under /dev)")
    return DeviceSpec(host, os.path.normpath(container), perms)


_RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
            "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


def parse_ulimit(text: str) -> tuple[str, int, int]:
    """`nofile=1024:2048` → ("RLIMIT_NOFILE", 1024, 2048); `nproc=100`: soft = hard;
    -1 means unlimited."""
    flag = f"--ulimit {text}"
    name, eq, value = text.partition("=")
    name = name.strip().lower()
    if not eq or name not in _RLIMITS:
        raise InvalidArgument(f"{flag}: expected NAME=SOFT[:HARD] with NAME one of "
                              + ", ".join(_RLIMITS))
    soft_text, _, hard_text = value.partition(":")
    hard_text = hard_text or soft_text

    def number(v: str) -> int:
        v = v.strip()
        if v in ("-1", "unlimited"):
            return UNLIMITED
        if not v.isdigit():
            raise InvalidArgument(f"{flag}: {v!r} is not a number")
        return int(v)

    soft, hard = number(soft_text), number(hard_text)
    if soft > hard:
        raise InvalidArgument(f"{flag}: soft limit {soft} is above the hard limit {hard}")
    return f"RLIMIT_{name.upper()}", soft, hard


def parse_key_values(items: Iterable[str], flag: str, *, require_value: bool = False
                     ) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or (require_value and not eq):
            raise InvalidArgument(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def parse_sysctls(items: Iterable[str]) -> dict[str, str]:
    out = parse_key_values(items, "--sysctl", require_value=True)
    for key in out:
        if not re.fullmatch(r"[a-zA-Z0-9_.\-/]+", key):
            raise InvalidArgument(f"--sysctl {key!r}: not a sysctl name")
    return {k.replace("/", "."): v for k, v in out.items()}


def read_env_file(path: str | os.PathLike[str]) -> list[str]:
    """docker's --env-file: `NAME=value` per line, `NAME` alone takes the host's value,
    blank lines and `#` comments skipped; values are taken literally (no quotes)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise NotFound(f"--env-file {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"--env-file {p}: {exc}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        name, eq, value = stripped.partition("=")
        if not name or any(c.isspace() for c in name):
            raise InvalidArgument(f"--env-file {p}:{number}: variable name {name!r} "
                                  "contains whitespace")
        if not eq:
            host = os.environ.get(name)
            if host is None:
                continue
            out.append(f"{name}={host}")
        else:
            out.append(f"{name}={value}")
    return out


# -- security options -------------------------------------------------------------------


@dataclass(frozen=True)
class SecurityOptions:
    #: None: the default profile; "unconfined"; or a profile file path
    seccomp: str | None = None
    no_new_privileges: bool = False
    apparmor: str | None = None
    label_disable: bool = False
    mask: tuple[str, ...] = ()
    unmask: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def parse_security_opts(items: Iterable[str]) -> SecurityOptions:
    seccomp = None
    nnp = False
    apparmor = None
    label_disable = False
    mask: list[str] = []
    unmask: list[str] = []
    for item in items:
        flag = f"--security-opt {item}"
        key, eq, value = item.partition("=")
        if not eq and ":" in item and key.startswith(("seccomp", "apparmor", "label")):
            key, _, value = item.partition(":")  # docker's old `seccomp:PATH`
            eq = ":"
        if key == "seccomp":
            if not value:
                raise InvalidArgument(f"{flag}: seccomp=unconfined or seccomp=PROFILE.json")
            seccomp = value
        elif key in ("no-new-privileges", "no_new_privileges"):
            nnp = _bool(value if eq else "true", flag)
        elif key == "apparmor":
            apparmor = value or None
        elif key == "label":
            if value == "disable":
                label_disable = True
            elif value.split(":")[0] not in ("user", "role", "type", "level", "filetype"):
                raise InvalidArgument(f"{flag}: unknown label option")
        elif key == "mask":
            mask.extend(p for p in value.split(":") if p)
        elif key == "unmask":
            unmask.extend(p for p in value.split(":") if p)
        else:
            raise InvalidArgument(f"{flag}: unknown security option {key!r} (seccomp, "
                                  "no-new-privileges, apparmor, label, mask, unmask)")
    for path in mask + [u for u in unmask if u != "ALL"]:
        if not path.startswith("/"):
            raise InvalidArgument(f"--security-opt mask/unmask: {path!r} is not absolute")
    return SecurityOptions(seccomp, nnp, apparmor, label_disable, tuple(mask), tuple(unmask))


def parse_signal(text: str | int) -> int:
    """`SIGTERM`, `TERM`, `15` → 15."""
    import signal

    if isinstance(text, int) or str(text).isdigit():
        number = int(text)
        if not 0 < number < 65:
            raise InvalidArgument(f"--stop-signal: {text!r} is not a signal number")
        return number
    name = str(text).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        if name.startswith("SIGRTMIN+") and name[9:].isdigit():
            return int(signal.SIGRTMIN) + int(name[9:])
        raise InvalidArgument(f"--stop-signal: unknown signal {text!r}") from None


__all__ = [
    "UNLIMITED",
    "DeviceSpec",
    "MountSpec",
    "SecurityOptions",
    "merge_capabilities",
    "normalize_capability",
    "parse_cpus",
    "parse_device",
    "parse_key_values",
    "parse_mount",
    "parse_security_opts",
    "parse_signal",
    "parse_size",
    "parse_sysctls",
    "parse_tmpfs",
    "parse_ulimit",
    "parse_volume",
    "read_env_file",
]
