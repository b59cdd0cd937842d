"""`corral network create|ls|inspect|rm|connect|disconnect|prune|reload` (podman's
names and flags; docs/design/networking.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from corral.cli import errors


def register(commands: Any) -> None:
    network = commands.add_parser("network", help="manage networks")
    sub = network.add_subparsers(dest="network_command", metavar="COMMAND",
                                 parser_class=type(network))
    sub.required = True

    p = sub.add_parser("create", help="create a bridge network")
    p.add_argument("--subnet", action="append", default=[], help="e.g. 10.99.5.0/24")
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[],
                   help="a CIDR inside the subnet to lease addresses from")
    p.add_argument("--internal", action="store_true", help="no NAT, no route out")
    p.add_argument("-d", "--driver", default="bridge", help="only bridge")
    p.add_argument("--interface-name", help="the bridge's name (default corralN)")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--ignore", action="store_true", help="no error if it exists already")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("ls", aliases=["list"], help="list networks")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", help="json")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="name=, id=, label=KEY[=VALUE]")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("inspect", help="show networks as JSON")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("rm", aliases=["remove"], help="remove networks")
    p.add_argument("-f", "--force", action="store_true",
                   help="also remove the containers that use them")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    p.set_defaults(func=cmd_rm, codes=errors.REMOVE_CODES)

    p = sub.add_parser("connect", help="connect a container to a network")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("network")
    p.add_argument("container")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true", help="accepted")
    p.add_argument("network")
    p.add_argument("container")
    p.set_defaults(func=cmd_disconnect)

    p = sub.add_parser("prune", help="remove unused networks and stale attachments")
    p.add_argument("-f", "--force", action="store_true", help="do not ask (never asks)")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("check", help="CNI CHECK a running container's networks")
    p.add_argument("container")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("reload", help="tear down the networking of stopped containers and "
                       "restore the isolation rules")
    p.set_defaults(func=cmd_reload)


def _engine(ctx: Any) -> Any:
    from corral.cli.container import _engine as engine_for

    return engine_for(ctx)


def _networks(ctx: Any) -> Any:
    from corral.engine.networking import manager

    return manager(_engine(ctx)).networks


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise errors.UsageError(f"--label: {item!r} has no key")
        labels[key] = value
    return labels


def cmd_create(args: argparse.Namespace, ctx: Any) -> int:
    from corral.errors import AlreadyExists

    if args.driver != "bridge":
        raise errors.UsageError(f"--driver {args.driver}: only bridge is supported")
    store = _networks(ctx)
    name = args.name
    if name is None:
        names = {n.name for n in store.list()}
        index = 1
        while f"corral{index}" in names:
            index += 1
        name = f"corral{index}"
    try:
        network = store.create(name, subnets=args.subnet, gateways=args.gateway,
                               ip_ranges=args.ip_range, internal=args.internal,
                               labels=_labels(args.label), bridge=args.interface_name)
    except AlreadyExists:
        if not args.ignore:
            raise
        network = store.get(name)
    print(network.name)
    return 0


def _matches(network: Any, filters: list[str]) -> bool:
    for text in filters:
        key, _, value = text.partition("=")
        if key == "name" and value not in network.name:
            return False
        if key == "id" and not network.id.startswith(value):
            return False
        if key == "label":
            k, eq, v = value.partition("=")
            if k not in network.labels or (eq and network.labels[k] != v):
                return False
        if key not in ("name", "id", "label"):
            raise errors.UsageError(f"--filter: unknown filter {key!r} (name, id, label)")
    return True


def cmd_ls(args: argparse.Namespace, ctx: Any) -> int:
    store = _networks(ctx)
    store.ensure_default()
    networks = [n for n in store.list() if _matches(n, args.filter)]
    if args.format == "json":
        print(json.dumps([n.inspect() for n in networks], indent=2))
        return 0
    if args.quiet:
        for n in networks:
            print(n.name)
        return 0
    print(f"{'NETWORK ID':<14}{'NAME':<24}{'DRIVER':<9}SUBNETS")
    for n in networks:
        print(f"{n.id[:12]:<14}{n.name:<24}{n.driver:<9}"
              + ",".join(s.subnet for s in n.subnets))
    return 0


def cmd_inspect(args: argparse.Namespace, ctx: Any) -> int:
    store = _networks(ctx)
    print(json.dumps([store.get(name).inspect() for name in args.names], indent=2))
    return 0


def cmd_rm(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.network_verbs import remove_network

    engine = _engine(ctx)
    for name in args.names:
        print(remove_network(engine, name, force=args.force).name)
    return 0


def cmd_connect(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.network_verbs import connect

    connect(_engine(ctx), args.container, args.network, aliases=args.alias, ip=args.ip)
    return 0


def cmd_disconnect(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.network_verbs import disconnect

    disconnect(_engine(ctx), args.container, args.network)
    return 0


def cmd_prune(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.network_verbs import prune_networks

    for name in prune_networks(_engine(ctx)):
        print(name)
    return 0


def cmd_reload(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.networking import manager, reconcile
    from corral.network import isolation

    engine = _engine(ctx)
    for container_id in reconcile(engine):
        print(container_id)
    for network in manager(engine).networks.list():
        isolation.ensure(network.bridge, internal=network.internal,
                         subnets=[s.subnet for s in network.subnets], force=True)
    return 0


def cmd_check(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.network_verbs import check

    problems = check(_engine(ctx), args.container)
    for problem in problems:
        print(problem)
    return 1 if problems else 0
