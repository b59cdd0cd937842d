"""`corral network` verbs that need the engine (docs/design/networking.md): who uses a
network, connect/disconnect a container (live if it runs), remove and prune networks,
CNI CHECK of a container's attachments. The container lifecycle's side of networking
is `corral.engine.networking`."""

from __future__ import annotations

from typing import Any

from corral.engine.networking import (
    manager,
    network_names,
    publish_names,
    reconcile,
)
from corral.errors import FailedPrecondition, InvalidArgument, NotFound


def users(engine: Any, network: str) -> list[Any]:
    """Containers (any state) configured for, or attached to, `network`."""
    out = []
    for c in engine.list(all=True):
        if (c.config.network or "bridge") != "bridge":
            continue
        names = set(network_names(engine, c.config))
        if network in names or any(a["network"] == network for a in c.state.networks):
            out.append(c)
    return out


def _save_config(engine: Any, c: Any) -> None:
    from corral.storage.records import read_json, write_json

    data = read_json(c.bundle / "corral.json", {}) or {}
    data["config"] = c.config.to_json()
    write_json(c.bundle / "corral.json", data)


def connect(engine: Any, ref: str, network: str, *, aliases: list[str] | None = None,
            ip: str | None = None) -> Any:
    """Add a network to a container: attached now if it runs, else at its next start."""
    from corral.errors import AlreadyExists
    from corral.network.manager import Request

    c = engine.get(ref)
    if (c.config.network or "bridge") != "bridge":
        raise InvalidArgument(f"container {c.name} uses --network {c.config.network}: "
                              "it cannot join networks")
    m = manager(engine)
    net = m.networks.get(network)
    names = network_names(engine, c.config)
    if net.name in names:
        raise AlreadyExists(f"container {c.name} is already on network {net.name}")
    with engine._lock(c.id):
        c = engine.refresh(engine._load(engine.store.container(c.id)))
        if c.status in ("running", "paused"):
            used = {a["ifname"] for a in c.state.networks}
            index = 0
            while f"eth{index}" in used:
                index += 1
            attached = m.connect(c.id, Request(network=net, ip=ip,
                                               aliases=list(aliases or [])), f"eth{index}")
            c.state.networks.append(attached.to_json())
            engine._save_state(c)
            publish_names(engine, c)
        c.config.networks = [*names, net.name]
        _save_config(engine, c)
    return c


def disconnect(engine: Any, ref: str, network: str) -> Any:
    """Take a network away from a container (DEL now if it runs)."""
    c = engine.get(ref)
    m = manager(engine)
    net = m.networks.get(network)
    names = network_names(engine, c.config)
    attached = [a for a in c.state.networks if a["network"] == net.name]
    if net.name not in names and not attached:
        raise NotFound(f"container {c.name} is not on network {net.name}")
    with engine._lock(c.id):
        c = engine.refresh(engine._load(engine.store.container(c.id)))
        for a in attached:
            m.disconnect(c.id, net.name, a["ifname"])
        c.state.networks = [a for a in c.state.networks if a["network"] != net.name]
        c.state.ports = c.state.ports if c.state.networks else []
        engine._save_state(c)
        if attached:
            publish_names(engine, c)
        rest = [n for n in names if n != net.name]
        if not rest:
            c.config.network, rest = "none", []
        c.config.networks = rest
        _save_config(engine, c)
    return c


def remove_network(engine: Any, name: str, *, force: bool = False) -> Any:
    """`network rm`: refused while containers use it, unless forced (they are removed)."""
    m = manager(engine)
    net = m.networks.get(name)
    using = users(engine, net.name)
    if using and not force:
        from corral.network.networks import NetworkInUse

        raise NetworkInUse(f"network {net.name} is used by container(s) "
                           + ", ".join(c.name for c in using) + " (remove them or use -f)")
    for c in using:
        engine.remove(c.id, force=True)
    for container_id in m.users(net.name):  # leftovers of containers that are gone
        m.teardown(container_id)
    return m.networks.remove(net.name)


def prune_networks(engine: Any) -> list[str]:
    """`network prune`: reconcile leftovers, then remove networks no container uses
    (never the default network)."""
    reconcile(engine)
    m = manager(engine)
    removed = []
    for net in m.networks.list():
        if net.name != m.networks.default_name and not users(engine, net.name):
            m.networks.remove(net.name)
            removed.append(net.name)
            continue
        # GC (CNI 1.1): plugins may drop what no remaining attachment holds
        valid = [(e.container_id, e.ifname) for e in m.cni.cached_entries(net.name)]
        for error in m.cni.gc(net.conflist(), valid):
            import sys

            print(f"corral: network prune: {error}", file=sys.stderr)
    return removed


def check(engine: Any, ref: str) -> list[str]:
    """CNI CHECK of each of a running container's attachments; returns the problems."""
    from corral.network.cni.client import Attachment, CNIError

    c = engine.get(ref)
    if c.status not in ("running", "paused"):
        raise FailedPrecondition(f"container {c.name} is {c.status}, not running")
    m = manager(engine)
    problems = []
    for a in c.state.networks:
        entry = m.cni.cached(a["network"], c.id, a["ifname"])
        if entry is None:
            problems.append(f"{a['network']}/{a['ifname']}: no cached result")
            continue
        from corral.network.cni.config import parse_conflist

        try:
            m.cni.check(parse_conflist(entry.config, str(entry.path)),
                        Attachment(c.id, a["ifname"], str(m.netns_path(c.id)),
                                   tuple((k, v) for k, v in entry.cni_args),
                                   dict(entry.capability_args)))
        except CNIError as exc:
            problems.append(f"{a['network']}/{a['ifname']}: {exc}")
    return problems
