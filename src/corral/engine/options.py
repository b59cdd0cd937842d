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
  `--tmpfs DST[:OPTS]` → `MountSpec` (`rro`, `bind-recursive=readonly`: recursive
  read-only);
- `--ulimit name=soft[:hard]` (-1: unlimited) → (RLIMIT_NAME, soft, hard);
- `--device HOST[:CONTAINER][:PERMS]` → `DeviceSpec`;
- `--security-opt` → `SecurityOptions`; `--cap-add/--cap-drop` names (with or
  without CAP_, any case, ALL); `--sysctl k=v`; `--label k=v`; `--env-file` lines;
- `--ipc/--uts/--pid` (private, host, container:ID, ns:/path) → `NamespaceMode`;
  `--cgroup-parent`, `--cgroup-conf`, `--oom-score-adj`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from corral.errors import InvalidArgument, NotFound
from corral.records_light import dataclass, field

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
UNLIMITED = 2**64 - 1  # RLIM_INFINITY in the OCI spec's uint64

#: propagation and per-mount flags accepted after `-v ...:` (docker/podman)
_PROPAGATION = ("shared", "rshared", "slave", "rslave", "private", "rprivate",
                "unbindable", "runbindable")
_FLAGS = ("noexec", "exec", "nosuid", "suid", "nodev", "dev", "atime", "noatime",
          "relatime", "norelatime", "strictatime", "nostrictatime", "nodiratime",
          "diratime", "sync", "async")
#: the private propagations `rro` (recursive read-only) may be combined with
_PRIVATE = ("private", "rprivate")


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
        elif opt in _PROPAGATION or opt in _FLAGS or opt in ("bind", "rbind", "rro"):
            extra.append(opt)
        elif opt == "nocopy":
            nocopy = True
        elif opt in ("copy",):
            nocopy = False
        else:
            raise InvalidArgument(f"{flag}: unknown volume option {opt!r}")
    dest = _check_destination(dest, flag)
    if "rro" in extra:
        readonly = _recursive_readonly(extra, readonly, seen_mode, flag)
    if _is_path(source):
        base = cwd or os.getcwd()
        path = os.path.normpath(os.path.join(base, source))
        if nocopy:
            raise InvalidArgument(f"{flag}: nocopy applies to named volumes only")
        return MountSpec("bind", dest, path, readonly, tuple(extra), origin="-v")
    _check_volume_name(source, flag)
    return MountSpec("volume", dest, source, readonly, tuple(extra), nocopy, origin="-v")


def _recursive_readonly(options: list[str], readonly: bool, explicit: bool,
                        flag: str) -> bool:
    """`rro` (every submount read-only too, mount_setattr(2) AT_RECURSIVE): implies
    `ro`, conflicts with `rw`, and needs a private propagation (the default)."""
    if explicit and not readonly:
        raise InvalidArgument(f"{flag}: rro (recursive read-only) conflicts with rw")
    other = [o for o in options if o in _PROPAGATION and o not in _PRIVATE]
    if other:
        raise InvalidArgument(f"{flag}: rro (recursive read-only) needs private "
                              f"propagation, not {other[0]}")
    if "bind" in options:
        raise InvalidArgument(f"{flag}: rro (recursive read-only) needs a recursive bind")
    return True


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
    readonly = explicit = False
    for key in ("readonly", "ro"):
        if key in fields:
            readonly, explicit = _bool(fields.pop(key), flag), True
    if "rw" in fields:
        readonly, explicit = not _bool(fields.pop("rw"), flag), True
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
        recursive = fields.pop("bind-recursive", None)
        if recursive is not None:  # docker 25's: enabled, disabled, writable, readonly
            if recursive == "disabled":
                options.append("bind")
            elif recursive == "readonly":
                options.append("rro")
                readonly = _recursive_readonly(options, readonly, explicit, flag)
            elif recursive not in ("enabled", "writable"):
                raise InvalidArgument(f"{flag}: bind-recursive {recursive!r} is not one of "
                                      "enabled, disabled, writable, readonly")
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


# -- namespaces, cgroup, process ------------------------------------------------------------


@dataclass(frozen=True)
class NamespaceMode:
    """`--ipc/--uts/--pid` parsed: `kind` private|host|container|path; `target` the
    container reference (container) or the namespace file (path)."""
    kind: str = "private"
    target: str = ""


def parse_namespace(text: str | None, flag: str) -> NamespaceMode:
    """podman's `--ipc`, `--uts`, `--pid` values: `private` (or unset; `shareable` for
    --ipc), `host`, `container:ID|NAME`, `ns:/path` (or an absolute path)."""
    value = (text or "").strip()
    if value in ("", "private") or (value == "shareable" and flag == "--ipc"):
        return NamespaceMode()
    if value == "host":
        return NamespaceMode("host")
    kind, sep, rest = value.partition(":")
    if sep and kind == "container":
        if not rest:
            raise InvalidArgument(f"{flag} container: needs a container name or id")
        return NamespaceMode("container", rest)
    if (sep and kind == "ns") or value.startswith("/"):
        path = rest if sep and kind == "ns" else value
        if not path.startswith("/"):
            raise InvalidArgument(f"{flag} {value}: the namespace path must be absolute")
        return NamespaceMode("path", os.path.normpath(path))
    extra = ", shareable" if flag == "--ipc" else ""
    raise InvalidArgument(f"{flag} {value!r}: expected private{extra}, host, "
                          "container:ID or ns:/path")


_CGROUP_NAME = re.compile(r"[A-Za-z0-9_.@:+-]+")


def parse_cgroup_parent(text: str, flag: str = "--cgroup-parent") -> str:
    """`--cgroup-parent PATH` → an absolute cgroup path (a relative one is taken from the
    hierarchy root, as podman's cgroupfs manager does): no `..`, no empty or odd
    components."""
    value = text.strip()
    parts = [p for p in value.split("/") if p]
    if not parts:
        raise InvalidArgument(f"{flag} {text!r}: a cgroup path is needed (e.g. "
                              "/my-parent)")
    for part in parts:
        if part in (".", "..") or not _CGROUP_NAME.fullmatch(part):
            raise InvalidArgument(f"{flag} {text!r}: {part!r} is not a valid cgroup name "
                                  "(letters, digits, _ . @ : + -; no '..')")
    return "/" + "/".join(parts)


def parse_cgroup_conf(items: Iterable[str]) -> dict[str, str]:
    """`--cgroup-conf KEY=VALUE` (cgroup v2 files, e.g. memory.high=1g) → OCI
    `linux.resources.unified`."""
    out = parse_key_values(items, "--cgroup-conf", require_value=True)
    for key in out:
        if not re.fullmatch(r"[a-z0-9_]+\.[A-Za-z0-9_.]+", key):
            raise InvalidArgument(f"--cgroup-conf {key!r}: not a cgroup file name "
                                  "(controller.file)")
    return out


def parse_oom_score_adj(value: int | str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"--oom-score-adj: {value!r} is not a number") from None
    if not -1000 <= number <= 1000:
        raise InvalidArgument(f"--oom-score-adj: {number} is not within -1000..1000")
    return number


def parse_int(value: int | str, flag: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{flag}: {value!r} is not a number") from None
    if (minimum is not None and number < minimum) or (maximum is not None and
                                                      number > maximum):
        raise InvalidArgument(f"{flag}: {number} is not within {minimum}..{maximum}")
    return number


def check_paths(paths: Iterable[str], flag: str) -> list[str]:
    """Absolute container paths (masked_paths, readonly_paths)."""
    out = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidArgument(f"{flag}: {path!r} is not an absolute path")
        out.append(path)
    return out


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
    "NamespaceMode",
    "SecurityOptions",
    "check_paths",
    "merge_capabilities",
    "normalize_capability",
    "parse_cgroup_conf",
    "parse_cgroup_parent",
    "parse_cpus",
    "parse_device",
    "parse_int",
    "parse_key_values",
    "parse_mount",
    "parse_namespace",
    "parse_oom_score_adj",
    "parse_security_opts",
    "parse_signal",
    "parse_size",
    "parse_sysctls",
    "parse_tmpfs",
    "parse_ulimit",
    "parse_volume",
    "read_env_file",
]
