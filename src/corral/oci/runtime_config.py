"""The OCI runtime bundle's config.json (config.md, config-linux.md).

`load_bundle` reads and validates a bundle's config against the spec's JSON
schema, then checks what the schema cannot express (unknown capabilities,
duplicate namespaces, relative mount destinations…). Errors name the field.
The config stays a plain dict: the spec is the documentation of its shape.
"""

from __future__ import annotations

import os

from corral.errors import InvalidArgument, NotFound
from corral.oci import fastjson, schema

OCI_VERSION = "1.2.0"

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


class ConfigError(InvalidArgument):
    """config.json is unreadable, not JSON, or violates the spec."""


def load_bundle(bundle: str) -> dict:
    """Read `<bundle>/config.json`, validate it, and return it as a dict."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle!r}: no config.json") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    config = parse(raw, path)
    # config.md#mounts: a bind mount's relative source is relative to the bundle
    for mount in config.get("mounts") or []:
        source = mount.get("source")
        if source and not os.path.isabs(source) and (
                mount.get("type") == "bind"
                or {"bind", "rbind"} & set(mount.get("options") or ())):
            mount["source"] = os.path.join(os.path.abspath(bundle), source)
    return config


def parse(raw: bytes | str, origin: str = "config.json") -> dict:
    try:
        config = fastjson.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{origin}: not valid JSON: {exc}") from None
    try:
        schema.validate(config, "config-schema.json")
        check_semantics(config)
    except InvalidArgument as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    return config


def check_semantics(config: dict) -> None:
    """Rules of config.md/config-linux.md that the JSON schema does not encode."""
    from corral.linux import capabilities

    process = config.get("process")
    if process is not None:
        if not process.get("args") and not process.get("commandLine"):
            raise InvalidArgument("process.args: must name at least the program to run")
        if not os.path.isabs(process.get("cwd", "/")):
            raise InvalidArgument(f"process.cwd: {process['cwd']!r} is not an absolute path")
        capabilities.validate(process.get("capabilities"))
        seen_limits = set()
        for index, rlimit in enumerate(process.get("rlimits") or []):
            from corral.linux import rlimits

            rlimits.number(rlimit["type"], f"process.rlimits[{index}].type")
            if rlimit["type"] in seen_limits:
                raise InvalidArgument(f"process.rlimits[{index}].type: {rlimit['type']} repeated")
            seen_limits.add(rlimit["type"])
            if rlimit["soft"] > rlimit["hard"]:
                raise InvalidArgument(f"process.rlimits[{index}]: soft limit above hard limit")
    if "root" in config and not config["root"].get("path"):
        raise InvalidArgument("root.path: must not be empty")
    for index, mount in enumerate(config.get("mounts") or []):
        if not os.path.isabs(mount["destination"]):
            raise InvalidArgument(f"mounts[{index}].destination: {mount['destination']!r} "
                                  "is not an absolute path")
    linux = config.get("linux") or {}
    seen: set[str] = set()
    for index, namespace in enumerate(linux.get("namespaces") or []):
        kind = namespace["type"]
        if kind in seen:
            raise InvalidArgument(f"linux.namespaces[{index}].type: {kind!r} listed twice")
        seen.add(kind)
        if namespace.get("path") and not os.path.isabs(namespace["path"]):
            raise InvalidArgument(f"linux.namespaces[{index}].path: must be absolute")
    if ("uidMappings" in linux or "gidMappings" in linux) and "user" not in seen:
        raise InvalidArgument("linux.uidMappings: needs a user namespace in linux.namespaces")
    if config.get("hostname") and "uts" not in seen:
        raise InvalidArgument("hostname: setting it needs a new uts namespace")
    if config.get("domainname") and "uts" not in seen:
        raise InvalidArgument("domainname: setting it needs a new uts namespace")
    for index, device in enumerate(linux.get("devices") or []):
        if not os.path.isabs(device["path"]):
            raise InvalidArgument(f"linux.devices[{index}].path: must be absolute")
        if device["type"] in ("c", "b", "u") and ("major" not in device or "minor" not in device):
            raise InvalidArgument(f"linux.devices[{index}]: a {device['type']} device needs "
                                  "major and minor")
    for index, entry in enumerate(linux.get("sysctl") or {}):
        if "/" in entry or ".." in entry:
            raise InvalidArgument(f"linux.sysctl: invalid key {entry!r}")
    if linux.get("seccomp") is not None:
        from corral.linux import seccomp

        seccomp.validate(linux["seccomp"])


def namespaces(config: dict) -> dict[str, str | None]:
    """`linux.namespaces` as {type: path or None (a new one)}."""
    return {ns["type"]: ns.get("path") or None
            for ns in (config.get("linux") or {}).get("namespaces") or []}


def rootfs_path(config: dict, bundle: str) -> str:
    """`root.path`, relative to the bundle unless absolute (config.md#root)."""
    path = config.get("root", {}).get("path", "rootfs")
    return os.path.normpath(os.path.join(bundle, path))


def dumps(document: object) -> str:
    return fastjson.dumps(document)
