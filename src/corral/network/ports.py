"""Published ports: `-p [ip:][hostPort:]containerPort[/proto]` (ranges too) and `-P`,
to the CNI `portMappings` capability (CONVENTIONS.md), with host ports checked free.

portmap DNATs rather than listening, so a host port taken by another program would be
silently shadowed: before ADD each mapping's host port is bound once (and released) to
prove it is free, and mappings of other Corral containers are checked too. A host port
of 0 (`-p 80`, `-P`) gets a free port from the kernel.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress

from corral.errors import AlreadyExists, InvalidArgument
from corral.records_light import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class PortMapping:
    container_port: int
    host_port: int = 0
    protocol: str = "tcp"
    host_ip: str = ""

    def to_cni(self) -> dict:
        entry = {"hostPort": self.host_port, "containerPort": self.container_port,
                 "protocol": self.protocol}
        if self.host_ip:
            entry["hostIP"] = self.host_ip
        return entry

    def to_json(self) -> dict:
        return {"host_ip": self.host_ip, "host_port": self.host_port,
                "container_port": self.container_port, "protocol": self.protocol}

    @classmethod
    def from_json(cls, data: dict) -> PortMapping:
        return cls(container_port=int(data["container_port"]),
                   host_port=int(data.get("host_port") or 0),
                   protocol=data.get("protocol") or "tcp", host_ip=data.get("host_ip") or "")

    def __str__(self) -> str:
        host = f"[{self.host_ip}]" if ":" in self.host_ip else (self.host_ip or "0.0.0.0")
        return f"{self.container_port}/{self.protocol} -> {host}:{self.host_port}"


def _port_range(text: str, what: str, spec: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        raise InvalidArgument(f"-p {spec}: {what} {text!r} is not a port or range") from None
    if not (0 < low <= high <= 65535):
        raise InvalidArgument(f"-p {spec}: {what} {text!r} is out of range 1-65535")
    return low, high


def parse_publish(spec: str) -> list[PortMapping]:
    """One `-p` value → its mappings (docker/podman syntax)."""
    text, _, protocol = spec.partition("/")
    protocol = (protocol or "tcp").lower()
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"-p {spec}: protocol {protocol!r} is not one of "
                              + ", ".join(PROTOCOLS))
    host_ip = ""
    if text.startswith("["):  # [ipv6]:host:container
        end = text.find("]")
        if end < 0:
            raise InvalidArgument(f"-p {spec}: missing ']' after the IPv6 address")
        host_ip, text = text[1:end], text[end + 1:].lstrip(":")
        parts = text.split(":")
        if len(parts) == 1:
            parts = ["", parts[0]]
        host_part, container_part = parts[0], parts[-1]
        if len(parts) != 2:
            raise InvalidArgument(f"-p {spec}: expected [ip]:hostPort:containerPort")
    else:
        parts = text.split(":")
        if len(parts) == 1:
            host_part, container_part = "", parts[0]
        elif len(parts) == 2:
            host_part, container_part = parts
        elif len(parts) == 3:
            host_ip, host_part, container_part = parts
        else:
            raise InvalidArgument(f"-p {spec}: expected [ip:][hostPort:]containerPort")
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise InvalidArgument(f"-p {spec}: host IP {host_ip!r} is not an address") \
                from None
    c_low, c_high = _port_range(container_part, "container port", spec)
    if host_part:
        h_low, h_high = _port_range(host_part, "host port", spec)
        if h_high - h_low != c_high - c_low:
            raise InvalidArgument(f"-p {spec}: host and container ranges differ in size")
    else:
        h_low = 0
    return [PortMapping(container_port=c_low + i,
                        host_port=(h_low + i) if h_low else 0, protocol=protocol,
                        host_ip=host_ip) for i in range(c_high - c_low + 1)]


def parse_exposed(exposed: dict | list | None) -> list[PortMapping]:
    """`-P`: every port the image EXPOSEs (`"80/tcp"` keys), each to a free host port."""
    out = []
    for key in (exposed or {}):
        port, _, protocol = str(key).partition("/")
        out.extend(parse_publish(f"{port}/{protocol or 'tcp'}"))
    return out


def _socket_for(mapping: PortMapping) -> socket.socket:
    import socket

    family = socket.AF_INET6 if ":" in mapping.host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if mapping.protocol == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family, kind)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def reserve(mappings: list[PortMapping],
            taken: set[tuple[str, int, str]] = frozenset()) -> list[PortMapping]:
    """Check each host port is free (bind test, and not in `taken`: (ip, port, proto) of
    other containers); give port-0 mappings a free port. Returns the final mappings."""
    out: list[PortMapping] = []
    mine: set[tuple[str, int, str]] = set()
    for m in mappings:
        if m.protocol == "sctp":
            out.append(m)
            continue
        with contextlib.closing(_socket_for(m)) as sock:
            try:
                sock.bind((m.host_ip or ("::" if ":" in m.host_ip else "0.0.0.0"),
                           m.host_port))
            except OSError as exc:
                where = f"{m.host_ip or '0.0.0.0'}:{m.host_port}/{m.protocol}"
                if exc.errno == errno.EADDRINUSE:
                    raise AlreadyExists(f"port {where} is already in use on the host") \
                        from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise InvalidArgument(f"-p: host IP {m.host_ip} is not an address of "
                                          "this host") from None
                raise InvalidArgument(f"-p: cannot bind {where}: {exc.strerror}") from None
            port = sock.getsockname()[1]
        final = PortMapping(m.container_port, port, m.protocol, m.host_ip)
        for ip, other_port, proto in taken | mine:
            if other_port == port and proto == m.protocol and \
                    (not ip or not m.host_ip or ip == m.host_ip):
                raise AlreadyExists(f"port {m.host_ip or '0.0.0.0'}:{port}/{m.protocol} is "
                                    "already published by another container")
        mine.add((m.host_ip, port, m.protocol))
        out.append(final)
    return out
