"""What the engine calls: give a container a network namespace attached to its networks
(CNI ADD per network, `eth0`, `eth1`, ...), take it all down again (DEL from the result
cache, so it works after a restart or with the network's record gone), and reconcile
leftovers of containers that are gone (a killed monitor, a reboot).

Every failure on the way up undoes what was done, so a failed start leaves no veth,
lease, rule or netns behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import InvalidArgument
from corral.network import netns as netns_mod
from corral.network.cni.client import Attachment, CNIClient, CNIError, ensure_available
from corral.network.networks import Network, NetworkStore
from corral.network.ports import PortMapping


@dataclass
class Request:
    """One network a container joins, with what the user asked for on it."""

    network: Network
    ip: str | None = None
    mac: str | None = None
    aliases: list[str] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)


@dataclass
class Attached:
    """What an ADD gave one interface (kept in the container's state)."""

    network: str
    ifname: str
    ips: list[str]          # with prefix, e.g. 10.99.0.5/24
    gateway: str | None
    mac: str | None
    aliases: list[str] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [ip.split("/")[0] for ip in self.ips]

    def to_json(self) -> dict[str, Any]:
        return {"network": self.network, "ifname": self.ifname, "ips": self.ips,
                "gateway": self.gateway, "mac": self.mac, "aliases": self.aliases}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attached:
        return cls(network=data["network"], ifname=data["ifname"],
                   ips=list(data.get("ips") or []), gateway=data.get("gateway"),
                   mac=data.get("mac"), aliases=list(data.get("aliases") or []))


def _summarize(network: str, ifname: str, result: dict[str, Any],
               aliases: list[str]) -> Attached:
    """The container side of a CNI result (SPEC section 5, "ADD Success")."""
    interfaces = result.get("interfaces") or []
    index = next((i for i, iface in enumerate(interfaces)
                  if iface.get("name") == ifname and iface.get("sandbox")), None)
    ips, gateway = [], None
    for entry in result.get("ips") or []:
        if index is None or entry.get("interface") in (None, index):
            ips.append(entry["address"])
            gateway = gateway or entry.get("gateway")
    mac = interfaces[index].get("mac") if index is not None else None
    return Attached(network=network, ifname=ifname, ips=ips, gateway=gateway, mac=mac,
                    aliases=aliases)


class NetworkManager:
    """Network namespaces of one store root and their CNI attachments."""

    def __init__(self, root: Path, *, networks: NetworkStore | None = None,
                 plugin_dirs: list[str] | tuple[str, ...] | None = None) -> None:
        self.root = Path(root)
        self.networks = networks or NetworkStore(self.root / "networks")
        self.cni = CNIClient(paths=plugin_dirs, cache_dir=self.root / "networks" / "cni")
        self.netns_dir = self.root / "engine" / "netns"
        self.ports_dir = self.root / "networks" / "ports"
        from corral.network.hosts import HostsRegistry

        self.hosts = HostsRegistry(self.root / "networks" / "hosts")

    def netns_path(self, container_id: str) -> Path:
        return self.netns_dir / container_id

    # -- ports ----------------------------------------------------------------------------------
    def reserve_ports(self, container_id: str, wanted: list[PortMapping]) -> list[PortMapping]:
        """Free host ports for `wanted`, recorded under `networks/ports/<id>` while the
        container has them: concurrent starts see each other's ports (portmap's DNAT
        rules hold no socket, so a bind() test alone would let both win)."""
        import json

        from corral.network.ports import reserve
        from corral.storage.records import FileLock

        if not wanted:
            return []
        self.ports_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(self.ports_dir / ".lock").held():
            taken: set[tuple[str, int, str]] = set()
            for path in self.ports_dir.iterdir():
                if path.name.startswith(".") or path.name == container_id:
                    continue
                with contextlib.suppress(OSError, ValueError, KeyError):
                    for p in json.loads(path.read_text()):
                        taken.add((p["host_ip"], int(p["host_port"]), p["protocol"]))
            final = reserve(wanted, taken)
            tmp = self.ports_dir / f".{container_id}.tmp"
            tmp.write_text(json.dumps([p.to_json() for p in final]))
            tmp.replace(self.ports_dir / container_id)
        return final

    # -- up -------------------------------------------------------------------------------------
    def setup(self, container_id: str, requests: list[Request]) -> list[Attached]:
        """A fresh netns for the container, then ADD on each network in order."""
        self.prepare(container_id, requests)
        return self.attach(container_id, requests)

    def prepare(self, container_id: str, requests: list[Request], *,
                clean: bool = True) -> Path:
        """Checks, isolation rules and the (empty) netns: what must exist before the
        runtime creates the container. `attach` may then run alongside that create.
        `clean=False`: the caller already tore down what a crash left for this id."""
        for request in requests:
            ensure_available(self.cni, request.network.conflist())
            if request.ip:
                _check_ip_in(request.network, request.ip)
        path = self.netns_path(container_id)
        if clean:
            self.teardown(container_id)  # anything a crash left for this id
        from corral.network import isolation

        for request in requests:
            isolation.ensure(request.network.bridge, internal=request.network.internal,
                             subnets=[s.subnet for s in request.network.subnets])
        netns_mod.create(path)
        return path

    def attach(self, container_id: str, requests: list[Request]) -> list[Attached]:
        """ADD on each network in order (`eth0`, `eth1`, ...); all undone on failure."""
        path = self.netns_path(container_id)
        done: list[Attached] = []
        try:
            for index, request in enumerate(requests):
                conflist = request.network.conflist(ports=bool(request.ports),
                                                    mac=bool(request.mac))
                caps: dict[str, Any] = {}
                if request.ports:
                    caps["portMappings"] = [p.to_cni() for p in request.ports]
                if request.ip:
                    prefix = _prefix_for(request.network, request.ip)
                    caps["ips"] = [f"{request.ip}/{prefix}"]
                if request.mac:
                    caps["mac"] = request.mac
                attachment = Attachment(container_id, f"eth{index}", str(path),
                                        capability_args=caps)
                result = self.cni.add(conflist, attachment)
                done.append(_summarize(conflist.name, attachment.ifname, result,
                                       request.aliases))
        except BaseException:
            self.teardown(container_id)
            raise
        return done

    def connect(self, container_id: str, request: Request, ifname: str) -> Attached:
        """ADD one more network to a running container's netns."""
        conflist = request.network.conflist(ports=False, mac=bool(request.mac))
        ensure_available(self.cni, conflist)
        from corral.network import isolation

        isolation.ensure(request.network.bridge, internal=request.network.internal,
                         subnets=[s.subnet for s in request.network.subnets])
        caps: dict[str, Any] = {}
        if request.ip:
            _check_ip_in(request.network, request.ip)
            caps["ips"] = [f"{request.ip}/{_prefix_for(request.network, request.ip)}"]
        if request.mac:
            caps["mac"] = request.mac
        attachment = Attachment(container_id, ifname, str(self.netns_path(container_id)),
                                capability_args=caps)
        result = self.cni.add(conflist, attachment)
        return _summarize(conflist.name, ifname, result, request.aliases)

    def disconnect(self, container_id: str, network: str, ifname: str) -> None:
        self.cni.delete(None, Attachment(container_id, ifname,
                                         str(self.netns_path(container_id))), network=network)

    # -- down -----------------------------------------------------------------------------------
    def teardown(self, container_id: str) -> list[CNIError]:
        """Drop the container's netns, then DEL every cached attachment (reverse order).
        Errors are returned after everything was tried; the netns always goes.

        The netns goes first: the kernel then destroys the container's interfaces, and
        with them the veth peers on the bridge, in the background, where a DEL inside the
        netns would wait ~25 ms for the veth to unregister. The DELs run without
        CNI_NETNS, which the spec allows (DEL is best effort; a plugin releases its IP
        and host rules even when the netns is gone): a third of the time."""
        errors: list[CNIError] = []
        netns_mod.remove(self.netns_path(container_id))
        entries = [e for e in self.cni.cached_entries() if e.container_id == container_id]
        for entry in sorted(entries, key=lambda e: e.ifname, reverse=True):
            attachment = Attachment(container_id, entry.ifname, "",
                                    tuple((k, v) for k, v in entry.cni_args),
                                    dict(entry.capability_args))
            try:
                self.cni.delete(None, attachment, network=entry.network)
            except CNIError as exc:
                errors.append(exc)
                # the cached result stays, so a later reconcile tries again
        with contextlib.suppress(FileNotFoundError):
            (self.ports_dir / container_id).unlink()
        self.hosts.leave(container_id)
        return errors

    def attached_ids(self) -> set[str]:
        """Containers with CNI attachments, a netns file or reserved ports (live or stale)."""
        ids = {e.container_id for e in self.cni.cached_entries()}
        for directory in (self.netns_dir, self.ports_dir, self.hosts.dir):
            with contextlib.suppress(FileNotFoundError):
                ids.update(p.name for p in directory.iterdir() if not p.name.startswith("."))
        return ids

    def reconcile(self, is_live: Callable[[str], bool]) -> list[str]:
        """Tear down what containers that are not running left behind; returns their ids."""
        cleaned = []
        for container_id in sorted(self.attached_ids()):
            if not is_live(container_id):
                self.teardown(container_id)
                cleaned.append(container_id)
        return cleaned

    def users(self, network: str) -> set[str]:
        """Ids of containers with an attachment to `network`."""
        return {e.container_id for e in self.cni.cached_entries(network)}


def _prefix_for(network: Network, ip: str) -> int:
    address = ipaddress.ip_address(ip)
    for s in network.subnets:
        net = ipaddress.ip_network(s.subnet)
        if address in net:
            return net.prefixlen
    raise InvalidArgument(f"--ip {ip} is not in any subnet of network {network.name}")


def _check_ip_in(network: Network, ip: str) -> None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"--ip {ip!r} is not an IP address") from None
    _prefix_for(network, ip)
    for s in network.subnets:
        if str(address) == s.gateway:
            raise InvalidArgument(f"--ip {ip} is the gateway of network {network.name}")
