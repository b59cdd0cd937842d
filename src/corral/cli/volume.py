"""`corral volume create|ls|inspect|rm|prune` (podman's names and flags).

The volumes live in the store (`corral.engine.volumes.VolumeStore`). Exit codes as
podman-volume-rm(1): 1 no such volume, 2 the volume is in use.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from corral.cli import errors


def register(commands: Any) -> None:
    volume = commands.add_parser("volume", help="manage volumes")
    sub = volume.add_subparsers(dest="volume_command", metavar="COMMAND",
                                parser_class=type(volume))
    sub.required = True

    p = sub.add_parser("create", help="create a volume")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--ignore", action="store_true", help="no error if it exists already")
    p.add_argument("-d", "--driver", default="local", help="only local")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("ls", aliases=["list"], help="list volumes")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", help="json")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="name=, label=KEY[=VALUE], dangling=true|false")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("inspect", help="show volumes' details as JSON")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("rm", aliases=["remove"], help="remove volumes")
    p.add_argument("-f", "--force", action="store_true",
                   help="also remove the containers that use them")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=cmd_rm, codes=errors.REMOVE_CODES)

    p = sub.add_parser("prune", help="remove the volumes no container uses")
    p.add_argument("-f", "--force", action="store_true", help="do not ask (never asks)")
    p.add_argument("--filter", action="append", default=[], help="label=KEY[=VALUE]")
    p.set_defaults(func=cmd_prune)


def volumes_of(ctx: Any) -> Any:
    from corral.engine.volumes import VolumeStore

    return VolumeStore.for_store(ctx.store)


def _labels(items: list[str]) -> dict[str, str]:
    from corral.engine.options import parse_key_values

    return parse_key_values(items, "--label")


def cmd_create(args: argparse.Namespace, ctx: Any) -> int:
    if args.driver != "local":
        raise errors.UsageError(f"volume driver {args.driver!r} is not supported (local)")
    volume = volumes_of(ctx).create(args.name, labels=_labels(args.label),
                                    exist_ok=args.ignore)
    print(volume.name)
    return 0


def _matches(volume: Any, filters: list[str]) -> bool:
    for item in filters:
        key, _, value = item.partition("=")
        if key == "name":
            if value not in volume.name:
                return False
        elif key == "label":
            lk, eq, lv = value.partition("=")
            if lk not in volume.labels or (eq and volume.labels[lk] != lv):
                return False
        elif key == "dangling":
            dangling = value.lower() in ("true", "1")
            if bool(volume.users) == dangling:
                return False
        else:
            raise errors.UsageError(f"unknown volume filter {key!r} (name, label, dangling)")
    return True


def cmd_ls(args: argparse.Namespace, ctx: Any) -> int:
    volumes = sorted((v for v in volumes_of(ctx).list() if _matches(v, args.filter)),
                     key=lambda v: v.name)
    if args.format == "json":
        print(json.dumps([v.inspect() for v in volumes], indent=4))
        return 0
    if args.format:
        raise errors.UsageError("--format: only json is supported")
    if args.quiet:
        for v in volumes:
            print(v.name)
        return 0
    from corral.cli.image import _print_table

    _print_table([("DRIVER", "VOLUME NAME")] + [("local", v.name) for v in volumes])
    return 0


def cmd_inspect(args: argparse.Namespace, ctx: Any) -> int:
    store = volumes_of(ctx)
    if args.all:
        volumes = store.list()
    else:
        if not args.names:
            raise errors.UsageError("volume inspect: name at least one volume (or --all)")
        volumes = [store.get(name) for name in args.names]
    print(json.dumps([v.inspect() for v in volumes], indent=4))
    return 0


def remove_container_fn(ctx: Any) -> Any:
    """How to remove a container that uses a volume: the engine's remove (stops it,
    removes logs and bundle) when it exists, else storage's."""
    engine = getattr(ctx, "engine", None)
    if engine is not None and hasattr(engine, "remove"):
        return lambda cid: engine.remove(cid, force=True)
    try:
        from corral.engine import Engine  # type: ignore[attr-defined]

        eng = Engine(root=ctx.root, storage_driver=ctx.driver, runtime=ctx.runtime)
        return lambda cid: eng.remove(cid, force=True)
    except (ImportError, TypeError):
        from corral.cli.container import runtime_delete

        def remove(cid: str) -> None:
            runtime_delete(ctx.store, cid, force=True, runtime=ctx.runtime)
            ctx.store.unmount(cid, force=True)
            ctx.store.remove_container(cid)

        return remove


def cmd_rm(args: argparse.Namespace, ctx: Any) -> int:
    store = volumes_of(ctx)
    names = [v.name for v in store.list()] if args.all else list(args.names)
    if not names and not args.all:
        raise errors.UsageError("volume rm: name at least one volume (or --all)")
    failure: BaseException | None = None
    remover = remove_container_fn(ctx) if args.force else None
    for name in names:
        try:
            store.remove(name, force=args.force, remove_container=remover)
            print(name)
        except Exception as exc:  # noqa: BLE001 - go on with the others
            errors.report(exc)
            failure = failure or exc
    return errors.exit_code(failure, errors.REMOVE_CODES) if failure is not None else 0


def cmd_prune(args: argparse.Namespace, ctx: Any) -> int:
    labels = []
    for item in args.filter:
        key, _, value = item.partition("=")
        if key != "label":
            raise errors.UsageError(f"volume prune: unknown filter {key!r} (label)")
        labels.append(value)
    for name in volumes_of(ctx).prune(labels=labels):
        print(name)
    sys.stdout.flush()
    return 0


__all__ = ["register", "volumes_of"]
