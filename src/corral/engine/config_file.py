"""The engine's configuration file (a containers.conf-like TOML, read with tomllib).

Files, later ones overriding earlier ones key by key:

1. built-in defaults (podman's: its capability set, pids_limit 2048, shm 64 MiB,
   `net.ipv4.ping_group_range=0 0`, no default ulimits beyond nofile);
2. `/etc/corral/corral.conf`;
3. the file named by `$CORRAL_CONFIG` (if set; it must exist);
4. command-line flags (`EngineConfig.override`), e.g. `--root`, `--runtime`.

    [storage]
    root = "/var/lib/corral"        # the store (also $CORRAL_ROOT, below flags)
    driver = "overlay"              # overlay | vfs

    [engine]
    runtime = "corral-runtime"      # any runc-CLI runtime: a path or a name on $PATH
    init_path = "/usr/bin/catatonit"

    [containers]
    netns = "bridge"                # default network mode: bridge (the default network),
                                    # none or private (loopback only), host
    default_capabilities = ["CHOWN", ...]   # with or without CAP_
    default_ulimits = ["nofile=1280:2560"]
    default_sysctls = ["net.ipv4.ping_group_range=0 0"]
    pids_limit = 2048               # 0 or -1: unlimited
    shm_size = "64m"
    seccomp_profile = ""            # a file; "unconfined" disables; "" the built-in one
    read_only_tmpfs = true          # --read-only also mounts tmpfs on /run /tmp /var/tmp

    [network]
    default_network = "corral"      # what `--network bridge` (the default) joins
    default_subnet = "10.99.0.0/24" # its subnet, made on first use
    default_bridge = "corral0"      # its bridge interface
    cni_plugin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]

Unknown keys are errors naming the file and key, as a typo would otherwise be
silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from corral.errors import InvalidArgument, NotFound
from corral.records_light import dataclass, field, fields, replace

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

SYSTEM_CONFIG = Path("/etc/corral/corral.conf")
CONFIG_ENV = "CORRAL_CONFIG"

#: podman's default capabilities (containers.conf default_capabilities)
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT",
)
DEFAULT_PIDS_LIMIT = 2048
DEFAULT_SHM_SIZE = 64 << 20


class ConfigError(InvalidArgument):
    """The configuration file is malformed or names an unknown key."""


@dataclass(frozen=True)
class EngineConfig:
    root: str | None = None
    driver: str | None = None
    runtime: str | None = None
    init_path: str | None = None
    netns: str = "bridge"
    default_capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    default_ulimits: tuple[str, ...] = ()
    default_sysctls: tuple[str, ...] = ("net.ipv4.ping_group_range=0 0",)
    pids_limit: int = DEFAULT_PIDS_LIMIT
    shm_size: int = DEFAULT_SHM_SIZE
    seccomp_profile: str = ""
    read_only_tmpfs: bool = True
    default_network: str = "corral"
    default_subnet: str = "10.99.0.0/24"
    default_bridge: str = "corral0"
    cni_plugin_dirs: tuple[str, ...] = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")
    #: the files that were read, in order
    sources: tuple[str, ...] = field(default=(), compare=False)

    def override(self, **values: Any) -> EngineConfig:
        """Command-line flags win: every value that is not None replaces the file's."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


# table -> {toml key: (field, kind)}
_KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "storage": {"root": ("root", "str"), "driver": ("driver", "str")},
    "engine": {"runtime": ("runtime", "str"), "init_path": ("init_path", "str")},
    "containers": {
        "netns": ("netns", "str"),
        "default_capabilities": ("default_capabilities", "caps"),
        "default_ulimits": ("default_ulimits", "strlist"),
        "default_sysctls": ("default_sysctls", "strlist"),
        "pids_limit": ("pids_limit", "int"),
        "shm_size": ("shm_size", "size"),
        "seccomp_profile": ("seccomp_profile", "str"),
        "read_only_tmpfs": ("read_only_tmpfs", "bool"),
        "init_path": ("init_path", "str"),
    },
    "network": {
        "default_network": ("default_network", "str"),
        "default_subnet": ("default_subnet", "str"),
        "default_bridge": ("default_bridge", "str"),
        "cni_plugin_dirs": ("cni_plugin_dirs", "strlist"),
    },
}
_NETNS = ("private", "none", "host", "bridge")


def _convert(source: str, key: str, kind: str, value: Any) -> Any:
    where = f"{source}: {key}"
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind == "size":
        from corral.engine.options import parse_size

        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return parse_size(value, where)
            except InvalidArgument as exc:
                raise ConfigError(str(exc)) from None
        raise ConfigError(f"{where}: expected a size such as \"64m\", got {value!r}")
    if kind in ("strlist", "caps"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        if kind == "caps":
            from corral.engine.options import normalize_capability

            try:
                return tuple(normalize_capability(v, where) for v in value)
            except InvalidArgument as exc:
                raise ConfigError(str(exc)) from None
        return tuple(value)
    raise AssertionError(kind)  # pragma: no cover


def parse(text: str, source: str = "<config>", base: EngineConfig | None = None) -> EngineConfig:
    """`text` (TOML) applied over `base` (default: the built-in defaults)."""
    import tomllib  # here: most hosts have no config file, and it costs ~3 ms to import

    base = base or EngineConfig()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    values: dict[str, Any] = {}
    for table, content in data.items():
        known = _KEYS.get(table)
        if known is None:
            raise ConfigError(f"{source}: unknown table [{table}] (known: "
                              + ", ".join(sorted(_KEYS)) + ")")
        if not isinstance(content, dict):
            raise ConfigError(f"{source}: {table} must be a table")
        for key, value in content.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown key {table}.{key}")
            name, kind = known[key]
            values[name] = _convert(source, f"{table}.{key}", kind, value)
    if "netns" in values and values["netns"] not in _NETNS:
        raise ConfigError(f"{source}: containers.netns must be one of {', '.join(_NETNS)}")
    if "driver" in values and values["driver"] not in ("overlay", "vfs"):
        raise ConfigError(f"{source}: storage.driver must be overlay or vfs")
    return replace(base, sources=base.sources + (source,), **values)


def config_paths(environ: dict[str, str] | None = None) -> list[Path]:
    """The files `load` reads, in order (the system file only if it exists)."""
    env = os.environ if environ is None else environ
    paths = []
    if SYSTEM_CONFIG.exists():
        paths.append(SYSTEM_CONFIG)
    if env.get(CONFIG_ENV):
        paths.append(Path(env[CONFIG_ENV]))
    return paths


def load(paths: list[Path] | None = None, *, environ: dict[str, str] | None = None
         ) -> EngineConfig:
    """Defaults, then each of `paths` (default: `config_paths()`)."""
    config = EngineConfig()
    for path in config_paths(environ) if paths is None else paths:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise NotFound(f"configuration file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"configuration file {path}: {exc.strerror}") from None
        config = parse(text, str(path), config)
    return config


def as_dict(config: EngineConfig) -> dict[str, Any]:
    """For `corral info`."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_PIDS_LIMIT",
    "SYSTEM_CONFIG",
    "ConfigError",
    "EngineConfig",
    "as_dict",
    "config_paths",
    "load",
    "parse",
]
