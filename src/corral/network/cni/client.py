"""Running a configuration list's plugins: CNI SPEC.md sections 2 (protocol) and 3
(ADD in order with prevResult chaining, DEL in reverse with the cached result, CHECK,
STATUS and GC from 1.1.0, capability arguments as `runtimeConfig`), and the result
cache that lets DEL and CHECK work after the runtime restarts (libcni's
`results/<network>-<container>-<ifname>`, kind `cniCacheV1`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import CorralError, NotFound
from corral.network.cni.config import (
    SUPPORTED_VERSIONS,
    NetworkConfigList,
    select_version,
    version_key,
)

DEFAULT_PATHS = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")
PLUGIN_TIMEOUT = 60.0


class CNIError(CorralError):
    """A plugin failed: its error result (SPEC section 5, "Error"), with the plugin named."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "",
                 network: str = "") -> None:
        self.plugin, self.command, self.code = plugin, command, code
        self.msg, self.details, self.network = msg, details, network
        where = f"network {network}: " if network else ""
        text = f"{where}CNI plugin {plugin} {command} failed (code {code}): {msg}"
        if details and details != msg:
            text += f": {details}"
        super().__init__(text)


class PluginNotFound(CNIError, NotFound):
    """No executable for a `type` on the plugin path."""


@dataclass(frozen=True)
class Attachment:
    """What identifies one attachment (SPEC section 3, "Attachment Parameters")."""

    container_id: str
    ifname: str
    netns: str = ""
    args: tuple[tuple[str, str], ...] = ()
    capability_args: dict[str, Any] = field(default_factory=dict, compare=False)

    def cni_args(self) -> str:
        pairs = [("IgnoreUnknown", "1"), *self.args] if self.args else []
        return ";".join(f"{k}={v}" for k, v in pairs)


@dataclass
class CacheEntry:
    network: str
    container_id: str
    ifname: str
    netns: str
    config: dict[str, Any]
    result: dict[str, Any] | None
    cni_args: list[list[str]]
    capability_args: dict[str, Any]
    path: Path

    def attachment(self) -> Attachment:
        return Attachment(self.container_id, self.ifname, self.netns,
                          tuple((k, v) for k, v in self.cni_args),
                          dict(self.capability_args))


class CNIClient:
    """Invoke plugins found on `paths` (CNI_PATH); cache results under `cache_dir`."""

    def __init__(self, paths: list[str] | tuple[str, ...] | None = None,
                 cache_dir: Path | str = "/var/lib/cni") -> None:
        self.paths = tuple(paths) if paths else DEFAULT_PATHS
        self.cache_dir = Path(cache_dir)
        self._versions: dict[str, tuple[str, ...]] = {}

    # -- plugins ------------------------------------------------------------------------------
    def find_plugin(self, kind: str, network: str = "") -> str:
        for directory in self.paths:
            candidate = os.path.join(directory, kind)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        raise PluginNotFound(kind, "lookup", 0,
                             f"no executable {kind!r} in CNI_PATH {':'.join(self.paths)}",
                             network=network)

    def _exec(self, kind: str, command: str, config: dict[str, Any] | None,
              attachment: Attachment | None, network: str = "") -> dict[str, Any] | None:
        binary = self.find_plugin(kind, network)
        env = {"CNI_COMMAND": command, "CNI_PATH": ":".join(self.paths),
               "PATH": os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"}
        if attachment is not None:
            env.update(CNI_CONTAINERID=attachment.container_id, CNI_IFNAME=attachment.ifname,
                       CNI_NETNS=attachment.netns)
            if attachment.args:
                env["CNI_ARGS"] = attachment.cni_args()
        stdin = json.dumps(config if config is not None else {}).encode()
        try:
            proc = subprocess.run([binary], check=False, input=stdin, env=env, capture_output=True,
                                  timeout=PLUGIN_TIMEOUT, close_fds=True)
        except subprocess.TimeoutExpired:
            raise CNIError(kind, command, 0, f"no answer in {PLUGIN_TIMEOUT:.0f}s",
                           network=network) from None
        except OSError as exc:
            raise CNIError(kind, command, 0, f"cannot run {binary}: {exc.strerror}",
                           network=network) from None
        out = proc.stdout.strip()
        if proc.returncode != 0:
            code, msg, details = proc.returncode, "", ""
            with contextlib.suppress(ValueError):
                error = json.loads(out or proc.stderr)
                if isinstance(error, dict):
                    code = int(error.get("code") or code)
                    msg = str(error.get("msg") or "")
                    details = str(error.get("details") or "")
            if not msg:
                msg = (proc.stderr or proc.stdout).decode(errors="replace").strip() or \
                    f"exit status {proc.returncode}"
            raise CNIError(kind, command, code, msg, details, network)
        if not out:
            return None
        try:
            result = json.loads(out)
        except ValueError:
            raise CNIError(kind, command, 0, f"invalid JSON result: {out[:200]!r}",
                           network=network) from None
        return result if isinstance(result, dict) else None

    def plugin_versions(self, kind: str) -> tuple[str, ...]:
        """VERSION (SPEC section 2): the versions a plugin supports (cached per client)."""
        if kind not in self._versions:
            result = self._exec(kind, "VERSION", {"cniVersion": SUPPORTED_VERSIONS[-1]},
                                None) or {}
            self._versions[kind] = tuple(result.get("supportedVersions") or
                                         [result.get("cniVersion") or "0.1.0"])
        return self._versions[kind]

    def negotiate(self, conflist: NetworkConfigList) -> str:
        """The highest version the list, this client and every plugin support."""
        candidates = [v for v in conflist.versions if v in SUPPORTED_VERSIONS]
        for plugin in conflist.plugins:
            kinds = [plugin["type"]]
            ipam = plugin.get("ipam")
            if isinstance(ipam, dict) and isinstance(ipam.get("type"), str):
                kinds.append(ipam["type"])
            for kind in kinds:
                supported = self.plugin_versions(kind)
                candidates = [v for v in candidates if v in supported]
                if not candidates:
                    raise CNIError(kind, "VERSION", 1,
                                   f"supports none of {', '.join(conflist.versions)} "
                                   f"(it supports {', '.join(supported)})",
                                   network=conflist.name)
        chosen = select_version(candidates)
        assert chosen is not None
        return chosen

    def _version_for(self, conflist: NetworkConfigList) -> str:
        if len(conflist.versions) == 1:
            return conflist.cni_version
        return self.negotiate(conflist)

    # -- request configuration (SPEC section 3) -----------------------------------------------
    @staticmethod
    def request_config(conflist: NetworkConfigList, plugin: dict[str, Any], version: str,
                       attachment: Attachment | None,
                       prev_result: dict[str, Any] | None) -> dict[str, Any]:
        config = {k: v for k, v in plugin.items()
                  if k != "capabilities" and not k.startswith("cni.dev/")}
        config["cniVersion"] = version
        config["name"] = conflist.name
        if attachment is not None:
            caps = plugin.get("capabilities") or {}
            runtime_config = {k: v for k, v in attachment.capability_args.items()
                              if caps.get(k)}
            if runtime_config:
                config["runtimeConfig"] = runtime_config
        if prev_result is not None:
            config["prevResult"] = prev_result
        return config

    # -- operations (SPEC section 3) ------------------------------------------------------------
    def add(self, conflist: NetworkConfigList, attachment: Attachment) -> dict[str, Any]:
        """ADD every plugin in order; the final result is cached and returned. A failed ADD
        is followed by a DEL, as the spec requires, and the ADD's error is raised."""
        version = self._version_for(conflist)
        result: dict[str, Any] | None = None
        try:
            for plugin in conflist.plugins:
                config = self.request_config(conflist, plugin, version, attachment, result)
                out = self._exec(plugin["type"], "ADD", config, attachment, conflist.name)
                if out is not None:
                    result = out
        except BaseException:
            with contextlib.suppress(Exception):
                self._delete_plugins(conflist, attachment, result, version)
            self._remove_cache(conflist.name, attachment)
            raise
        final = result or {"cniVersion": version}
        self._write_cache(conflist, attachment, final)
        return final

    def delete(self, conflist: NetworkConfigList | None, attachment: Attachment,
               network: str | None = None) -> None:
        """DEL in reverse order with the cached ADD result; with no list given, the cached
        list is used (so DEL works after the network's file is gone). Idempotent."""
        name = conflist.name if conflist is not None else network
        if name is None:
            raise ValueError("delete needs a configuration list or a network name")
        cached = self.cached(name, attachment.container_id, attachment.ifname)
        if cached is not None:
            from corral.network.cni.config import parse_conflist

            conflist = parse_conflist(cached.config, str(cached.path))
            if not attachment.capability_args and cached.capability_args:
                attachment = cached.attachment()
        if conflist is None:
            return  # nothing was added and nothing is known: nothing to delete
        prev = cached.result if cached is not None else None
        self._delete_plugins(conflist, attachment, prev, self._version_for(conflist))
        self._remove_cache(name, attachment)

    def _delete_plugins(self, conflist: NetworkConfigList, attachment: Attachment,
                        prev: dict[str, Any] | None, version: str) -> None:
        errors: list[CNIError] = []
        for plugin in reversed(conflist.plugins):
            config = self.request_config(conflist, plugin, version, attachment, prev)
            try:
                self._exec(plugin["type"], "DEL", config, attachment, conflist.name)
            except CNIError as exc:
                errors.append(exc)
                break  # SPEC: halt and return the error
        if errors:
            raise errors[0]

    def check(self, conflist: NetworkConfigList, attachment: Attachment) -> None:
        """CHECK (from 0.4.0) with the cached result; skipped when `disableCheck`."""
        if conflist.disable_check:
            return
        version = self._version_for(conflist)
        if version_key(version) < (0, 4, 0):
            raise CNIError(conflist.plugins[0]["type"], "CHECK", 1,
                           f"CHECK needs CNI 0.4.0 or later (the list is {version})",
                           network=conflist.name)
        cached = self.cached(conflist.name, attachment.container_id, attachment.ifname)
        if cached is None:
            raise CNIError(conflist.plugins[0]["type"], "CHECK", 1,
                           f"no cached result for {attachment.container_id}/"
                           f"{attachment.ifname}", network=conflist.name)
        for plugin in conflist.plugins:
            config = self.request_config(conflist, plugin, version, attachment, cached.result)
            self._exec(plugin["type"], "CHECK", config, attachment, conflist.name)

    def status(self, conflist: NetworkConfigList) -> None:
        """STATUS (1.1.0): every plugin must be ready. Older lists: plugins are found."""
        version = self._version_for(conflist)
        for plugin in conflist.plugins:
            self.find_plugin(plugin["type"], conflist.name)
            if version_key(version) >= (1, 1, 0):
                config = self.request_config(conflist, plugin, version, None, None)
                self._exec(plugin["type"], "STATUS", config, None, conflist.name)

    def gc(self, conflist: NetworkConfigList, valid: list[tuple[str, str]]) -> list[CNIError]:
        """GC (1.1.0): plugins drop what no valid attachment holds; cache entries of this
        network not in `valid` are removed. Errors are collected, not raised."""
        errors: list[CNIError] = []
        keep = set(valid)
        for entry in self.cached_entries(conflist.name):
            if (entry.container_id, entry.ifname) not in keep:
                with contextlib.suppress(OSError):
                    entry.path.unlink()
        if conflist.disable_gc:
            return errors
        version = self._version_for(conflist)
        if version_key(version) < (1, 1, 0):
            return errors
        for plugin in conflist.plugins:
            config = self.request_config(conflist, plugin, version, None, None)
            config["cni.dev/valid-attachments"] = [
                {"containerID": cid, "ifname": ifname} for cid, ifname in valid]
            try:
                self._exec(plugin["type"], "GC", config, None, conflist.name)
            except CNIError as exc:
                errors.append(exc)
        return errors

    # -- result cache ---------------------------------------------------------------------------
    def _cache_path(self, network: str, container_id: str, ifname: str) -> Path:
        return self.cache_dir / "results" / f"{network}-{container_id}-{ifname}"

    def _write_cache(self, conflist: NetworkConfigList, attachment: Attachment,
                     result: dict[str, Any]) -> None:
        path = self._cache_path(conflist.name, attachment.container_id, attachment.ifname)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"kind": "cniCacheV1", "containerId": attachment.container_id,
                "ifName": attachment.ifname, "networkName": conflist.name,
                "netns": attachment.netns, "config": conflist.to_json(),
                "cniArgs": [list(a) for a in attachment.args],
                "capabilityArgs": attachment.capability_args, "result": result}
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def _remove_cache(self, network: str, attachment: Attachment) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._cache_path(network, attachment.container_id, attachment.ifname).unlink()

    @staticmethod
    def _read_entry(path: Path) -> CacheEntry | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("kind") != "cniCacheV1":
            return None
        config = data.get("config")
        if isinstance(config, str):  # libcni stores the list base64-encoded
            import base64

            with contextlib.suppress(ValueError):
                config = json.loads(base64.b64decode(config))
        return CacheEntry(network=str(data.get("networkName")),
                          container_id=str(data.get("containerId")),
                          ifname=str(data.get("ifName")), netns=str(data.get("netns") or ""),
                          config=config if isinstance(config, dict) else {},
                          result=data.get("result"), cni_args=data.get("cniArgs") or [],
                          capability_args=data.get("capabilityArgs") or {}, path=path)

    def cached(self, network: str, container_id: str, ifname: str) -> CacheEntry | None:
        return self._read_entry(self._cache_path(network, container_id, ifname))

    def cached_entries(self, network: str | None = None) -> list[CacheEntry]:
        """Every cached attachment (of one network, if given)."""
        directory = self.cache_dir / "results"
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.startswith("."):
                continue
            entry = self._read_entry(directory / name)
            if entry is not None and (network is None or entry.network == network):
                out.append(entry)
        return out


def ensure_available(client: CNIClient, conflist: NetworkConfigList) -> None:
    """Every plugin of the list (and its IPAM plugin) is on the path, else PluginNotFound."""
    for plugin in conflist.plugins:
        client.find_plugin(plugin["type"], conflist.name)
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and isinstance(ipam.get("type"), str):
            client.find_plugin(ipam["type"], conflist.name)


__all__ = ["Attachment", "CNIClient", "CNIError", "CacheEntry", "PluginNotFound",
           "ensure_available"]
