"""Corral's named networks: records under `<root>/networks/<name>.json`, each turned
into a CNI configuration list of the standard plugins (bridge + host-local IPAM,
portmap, firewall, tuning), as podman's CNI backend does.

A network is a bridge on the host, so what must be unique is checked against the host
too: subnets against other networks, the host's routes and CNI lists in /etc/cni/net.d;
bridge names against the host's interfaces.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from corral.network.cni.config import NetworkConfigList, parse_conflist
from corral.storage.records import FileLock, now, read_json, write_json

CNI_VERSION = "1.0.0"
DEFAULT_NETWORK = "corral"
DEFAULT_SUBNET = "10.99.0.0/24"
DEFAULT_BRIDGE = "corral0"
#: where subnets for networks created without --subnet come from (podman: 10.89.0.0/24+)
SUBNET_POOL = ("10.99.0.0/16", 24)
HOST_CNI_DIRS = ("/etc/cni/net.d",)
IPAM_DATA_DIR = Path("/var/lib/cni/networks")  # host-local's default dataDir
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkNotFound(NotFound):
    """No network by that name or id."""


class NetworkInUse(FailedPrecondition):
    """Containers are attached to the network."""


@dataclass
class Subnet:
    subnet: str
    gateway: str
    range_start: str | None = None
    range_end: str | None = None


@dataclass
class Network:
    name: str
    id: str
    bridge: str
    subnets: list[Subnet]
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""
    driver: str = "bridge"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        subnets = [Subnet(**s) for s in data.get("subnets") or []]
        return cls(name=data["name"], id=data["id"], bridge=data["bridge"], subnets=subnets,
                   internal=bool(data.get("internal")), labels=dict(data.get("labels") or {}),
                   created=data.get("created") or "", driver=data.get("driver") or "bridge")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def conflist(self, *, ports: bool = True, mac: bool = True) -> NetworkConfigList:
        """The CNI configuration list for this network (SPEC section 1). An attachment
        without published ports or a MAC gets the list without `portmap` or `tuning`:
        they would do nothing but cost a plugin run on every start and stop. DEL and
        CHECK use the list their ADD used (the result cache keeps it)."""
        ranges = []
        for s in self.subnets:
            entry: dict[str, Any] = {"subnet": s.subnet, "gateway": s.gateway}
            if s.range_start:
                entry["rangeStart"] = s.range_start
            if s.range_end:
                entry["rangeEnd"] = s.range_end
            ranges.append([entry])
        ipam: dict[str, Any] = {"type": "host-local", "ranges": ranges}
        if not self.internal:
            ipam["routes"] = [{"dst": "0.0.0.0/0" if ipaddress.ip_network(s.subnet).version == 4
                               else "::/0"} for s in self.subnets]
        plugins: list[dict[str, Any]] = [  # NAT: one rule per network (network.isolation)
            {"type": "bridge", "bridge": self.bridge, "isGateway": not self.internal,
             "ipMasq": False, "hairpinMode": True,
             "capabilities": {"ips": True}, "ipam": ipam},
        ]
        if ports and not self.internal:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True},
                            "snat": True})
        # no `firewall` plugin: network.isolation accepts the bridge's traffic in
        # FORWARD once per bridge, not twice per container start and stop
        if mac:
            plugins.append({"type": "tuning", "capabilities": {"mac": True}})
        data = {"cniVersion": CNI_VERSION, "name": self.name, "plugins": plugins,
                "args": {"corral": {"id": self.id, "labels": self.labels}}}
        return parse_conflist(data, f"network {self.name}")

    def inspect(self) -> dict[str, Any]:
        """podman-network-inspect-like JSON."""
        return {"name": self.name, "id": self.id, "driver": self.driver,
                "network_interface": self.bridge, "created": self.created,
                "subnets": [{"subnet": s.subnet, "gateway": s.gateway,
                             **({"lease_range": {"start_ip": s.range_start,
                                                 "end_ip": s.range_end}}
                                if s.range_start or s.range_end else {})}
                            for s in self.subnets],
                "ipv6_enabled": any(ipaddress.ip_network(s.subnet).version == 6
                                    for s in self.subnets),
                "internal": self.internal, "dns_enabled": False, "labels": self.labels,
                "ipam_options": {"driver": "host-local"},
                "cni_config": self.conflist().to_json()}


def check_network_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 200:
        raise InvalidArgument(f"network name {name!r}: must start with a letter or digit and "
                              "contain only letters, digits, '_', '.' and '-'")
    if name in ("none", "host", "bridge", "private") or name.startswith("container:"):
        raise InvalidArgument(f"network name {name!r} is reserved")
    return name


def _parse_net(text: str, what: str) -> Net:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"{what} {text!r} is not a subnet (e.g. 10.99.5.0/24)") from None


def _parse_ip(text: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"{what} {text!r} is not an IP address") from None


def host_subnets() -> list[tuple[Net, str]]:
    """Subnets in use on the host: routes of every table (with their device) and the
    ranges of CNI lists in /etc/cni/net.d (podman's and others')."""
    out: list[tuple[Net, str]] = []
    for family in ("-4", "-6"):
        with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
            text = subprocess.run(["ip", "-j", family, "route", "show", "table", "all"],
                                  check=False, capture_output=True, text=True, timeout=10).stdout
            for route in json.loads(text or "[]"):
                dst = route.get("dst")
                if not dst or dst == "default" or route.get("type") in ("local", "broadcast",
                                                                          "multicast"):
                    continue
                with contextlib.suppress(ValueError):
                    net = ipaddress.ip_network(dst, strict=False)
                    if net.prefixlen and not net.is_loopback and not net.is_link_local:
                        out.append((net, f"the host's route via {route.get('dev', '?')}"))
    for directory in HOST_CNI_DIRS:
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(directory)):
                with contextlib.suppress(OSError, ValueError):
                    data = json.loads(Path(directory, name).read_text())
                    for plugin in data.get("plugins") or [data]:
                        for group in (plugin.get("ipam") or {}).get("ranges") or []:
                            for r in group:
                                out.append((ipaddress.ip_network(r["subnet"], strict=False),
                                            f"CNI network {data.get('name')} ({directory}/{name})"))
    return out


class NetworkStore:
    """Named networks of one store root; every change under `networks/.lock`."""

    def __init__(self, directory: Path | str, *, default_name: str = DEFAULT_NETWORK,
                 default_subnet: str = DEFAULT_SUBNET,
                 default_bridge: str = DEFAULT_BRIDGE) -> None:
        self.dir = Path(directory)
        self.default_name = default_name
        self.default_subnet = default_subnet
        self.default_bridge = default_bridge
        self._lock = FileLock(self.dir / ".lock")

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def list(self) -> list[Network]:
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                data = read_json(self.dir / name, None)
                if isinstance(data, dict) and "name" in data:
                    out.append(Network.from_json(data))
        return out

    def get(self, ref: str) -> Network:
        """By name, full id or unique id prefix (the default network is made on first use)."""
        if ref == self.default_name:
            return self.ensure_default()
        if _NAME.match(ref or ""):
            data = read_json(self._path(ref), None)
            if isinstance(data, dict):
                return Network.from_json(data)
        matches = [n for n in self.list() if len(ref) >= 3 and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"network id prefix {ref!r} is ambiguous")
        raise NetworkNotFound(f"network {ref!r} does not exist "
                              "(see `corral network ls`, or create it)")

    def ensure_default(self) -> Network:
        data = read_json(self._path(self.default_name), None)
        if isinstance(data, dict):
            return Network.from_json(data)
        with self._lock_held():
            data = read_json(self._path(self.default_name), None)
            if isinstance(data, dict):
                return Network.from_json(data)
            return self._create_locked(self.default_name, subnets=[self.default_subnet],
                                       bridge=self.default_bridge, default=True)

    def create(self, name: str, *, subnets: list[str] | None = None,
               gateways: list[str] | None = None, ip_ranges: list[str] | None = None,
               internal: bool = False, labels: dict[str, str] | None = None,
               bridge: str | None = None) -> Network:
        check_network_name(name)
        with self._lock_held():
            return self._create_locked(name, subnets=subnets or [], gateways=gateways or [],
                                       ip_ranges=ip_ranges or [], internal=internal,
                                       labels=labels or {}, bridge=bridge)

    @contextlib.contextmanager
    def _lock_held(self):  # type: ignore[no-untyped-def]
        self._ensure_dir()
        with self._lock.held():
            yield

    def _create_locked(self, name: str, *, subnets: list[str], gateways: list[str] = (),
                       ip_ranges: list[str] = (), internal: bool = False,
                       labels: dict[str, str] | None = None, bridge: str | None = None,
                       default: bool = False) -> Network:
        if self._path(name).exists() or (name == self.default_name and not default):
            raise AlreadyExists(f"network {name!r} already exists")
        existing = self.list()
        if len(gateways) > len(subnets) or len(ip_ranges) > len(subnets):
            raise InvalidArgument("each --gateway and --ip-range needs its own --subnet")
        taken = [(ipaddress.ip_network(s.subnet), f"network {n.name}")
                 for n in existing for s in n.subnets]
        host = host_subnets()
        nets: list[Net] = []
        for text in subnets:
            net = _parse_net(text, "--subnet")
            for other, owner in taken + [(n, "another --subnet") for n in nets]:
                if net.version == other.version and net.overlaps(other):
                    raise InvalidArgument(f"subnet {net} overlaps {other} of {owner}")
            for other, owner in host:
                if net.version == other.version and net.overlaps(other) and \
                        not (default and owner.endswith(f"via {bridge}")):
                    raise InvalidArgument(f"subnet {net} overlaps {other}, {owner}")
            nets.append(net)
        if not nets:
            nets.append(self._free_subnet(taken + host))
        records = []
        for index, net in enumerate(nets):
            if net.num_addresses < 4:
                raise InvalidArgument(f"subnet {net} is too small for containers")
            gateway = _parse_ip(gateways[index], "--gateway") if index < len(gateways) \
                else net.network_address + 1
            if gateway not in net or gateway in (net.network_address, net.broadcast_address):
                raise InvalidArgument(f"gateway {gateway} is not a host address of {net}")
            start = end = None
            if index < len(ip_ranges):
                rng = _parse_net(ip_ranges[index], "--ip-range")
                if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
                    raise InvalidArgument(f"--ip-range {rng} is not inside the subnet {net}")
                first = max(rng.network_address, net.network_address + 1)
                last = min(rng.broadcast_address, net.broadcast_address - 1) \
                    if net.version == 4 else rng.broadcast_address
                start, end = str(first), str(last)
            records.append(Subnet(subnet=str(net), gateway=str(gateway), range_start=start,
                                  range_end=end))
        bridge = self._bridge_name(bridge, existing)
        network = Network(name=name, id=secrets.token_hex(32), bridge=bridge,
                          subnets=records, internal=internal, labels=dict(labels or {}),
                          created=now())
        network.conflist()  # validates what we are about to write
        write_json(self._path(name), network.to_json())
        return network

    def _free_subnet(self, taken: list[tuple[Net, str]]) -> Net:
        pool, prefix = SUBNET_POOL
        for candidate in ipaddress.ip_network(pool).subnets(new_prefix=prefix):
            if candidate == ipaddress.ip_network(self.default_subnet, strict=False):
                continue  # kept for the default network even before it exists
            if not any(candidate.version == t.version and candidate.overlaps(t)
                       for t, _ in taken):
                return candidate
        raise FailedPrecondition(f"no free /{prefix} left in {pool}: give --subnet")

    def _bridge_name(self, wanted: str | None, existing: list[Network]) -> str:
        used = {n.bridge for n in existing}
        if wanted:
            if not _IFNAME.match(wanted):
                raise InvalidArgument(f"bridge name {wanted!r}: 1-15 letters, digits, "
                                      "'_', '.' or '-'")
            if wanted in used:
                raise AlreadyExists(f"bridge {wanted} is used by another network")
            return wanted
        host = set(os.listdir("/sys/class/net"))
        index = 1
        while f"corral{index}" in used or f"corral{index}" in host:
            index += 1
        return f"corral{index}"

    def remove(self, name: str) -> Network:
        """Drop the record, the bridge (if no one uses it) and host-local's lease dir.
        The caller checks first that no container is attached."""
        network = self.get(name)
        with self._lock_held(), contextlib.suppress(FileNotFoundError):
            self._path(network.name).unlink()
        remove_bridge(network.bridge)
        remove_leases(network.name)
        from corral.network import isolation

        isolation.remove(network.bridge, [s.subnet for s in network.subnets])
        return network


def remove_bridge(bridge: str) -> None:
    """Delete the bridge if it has no ports left (plugins never delete bridges)."""
    brif = Path("/sys/class/net", bridge, "brif")
    try:
        if any(brif.iterdir()):
            return
    except FileNotFoundError:
        return
    subprocess.run(["ip", "link", "delete", bridge, "type", "bridge"], check=False,
                   capture_output=True,
                   timeout=10)


def remove_leases(network: str) -> None:
    """host-local's lock and last-reserved files once no lease is left."""
    directory = IPAM_DATA_DIR / network
    with contextlib.suppress(OSError):
        names = os.listdir(directory)
        if all(n == "lock" or n.startswith("last_reserved_ip") for n in names):
            for n in names:
                (directory / n).unlink()
            directory.rmdir()
