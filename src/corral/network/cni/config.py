"""Network configuration lists (CNI SPEC.md section 1) and version selection.

A list is `{"cniVersion", "cniVersions"?, "name", "plugins": [{"type", ...}], ...}`;
a single plugin configuration (`.conf`) is turned into a one-plugin list as libcni does.
Unknown keys are kept: plugins get their objects unchanged but for the fields the
runtime derives (section 3, "Deriving request configuration").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import InvalidArgument

#: CNI versions this client speaks (results of 0.3.x, 0.4.0 and 1.x share one shape)
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_RESERVED = ("runtimeConfig", "args", "prevResult")


class ConfigError(InvalidArgument):
    """A configuration list is malformed (the message names the file and field)."""


def version_key(version: str) -> tuple[int, ...]:
    """`"1.0.0"` → (1, 0, 0); malformed versions raise ConfigError."""
    try:
        parts = tuple(int(p) for p in version.split("."))
    except (AttributeError, ValueError):
        raise ConfigError(f"cniVersion {version!r} is not a version") from None
    if len(parts) != 3:
        raise ConfigError(f"cniVersion {version!r} is not a version")
    return parts


@dataclass(frozen=True)
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    disable_check: bool = False
    disable_gc: bool = False
    versions: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.raw)

    @property
    def capabilities(self) -> set[str]:
        """Capability arguments some plugin accepts (e.g. portMappings, ips, mac)."""
        caps: set[str] = set()
        for plugin in self.plugins:
            caps.update(k for k, v in (plugin.get("capabilities") or {}).items() if v)
        return caps


def select_version(versions: list[str] | tuple[str, ...],
                   supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> str | None:
    """The highest version in `versions` that `supported` also has (SPEC section 1)."""
    common = [v for v in versions if v in supported]
    return max(common, key=version_key) if common else None


def parse_conflist(data: Any, source: str = "<config>") -> NetworkConfigList:
    """Validate a configuration list (or a single `.conf`) given as parsed JSON."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a network configuration must be a JSON object")
    if "plugins" not in data and "type" in data:  # a single plugin configuration
        plugin = {k: v for k, v in data.items() if k not in ("cniVersion", "name")}
        data = {"cniVersion": data.get("cniVersion"), "name": data.get("name"),
                "plugins": [plugin]}
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{source}: name {name!r} must start with a letter or digit and "
                          "contain only letters, digits, '_', '.' and '-'")
    version = data.get("cniVersion")
    if not isinstance(version, str):
        raise ConfigError(f"{source}: cniVersion is missing")
    version_key(version)
    versions = data.get("cniVersions") or []
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise ConfigError(f"{source}: cniVersions must be a list of strings")
    for v in versions:
        version_key(v)
    plugins = data.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise ConfigError(f"{source}: plugins must be a non-empty list")
    for index, plugin in enumerate(plugins):
        where = f"{source}: plugins[{index}]"
        if not isinstance(plugin, dict):
            raise ConfigError(f"{where} must be an object")
        kind = plugin.get("type")
        if not isinstance(kind, str) or not kind or "/" in kind or kind in (".", ".."):
            raise ConfigError(f"{where}.type {kind!r} must name a plugin binary")
        caps = plugin.get("capabilities", {})
        if not isinstance(caps, dict):
            raise ConfigError(f"{where}.capabilities must be an object")
        for key in _RESERVED:
            if key in plugin:
                raise ConfigError(f"{where}.{key} is reserved for the runtime")
    for key in ("disableCheck", "disableGC"):
        if not isinstance(data.get(key, False), bool):
            raise ConfigError(f"{source}: {key} must be true or false")
    return NetworkConfigList(
        name=name, cni_version=version, plugins=tuple(plugins),
        disable_check=bool(data.get("disableCheck", False)),
        disable_gc=bool(data.get("disableGC", False)),
        versions=tuple(dict.fromkeys([version, *versions])), raw=data, source=source)


def load_conflist(path: Path | str) -> NetworkConfigList:
    """Read and validate a `.conflist` or `.conf` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"network configuration {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"network configuration {path}: {exc}") from None
    return parse_conflist(data, str(path))
