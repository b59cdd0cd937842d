"""Image commands: load, save, import, images, rmi, tag, inspect, history, image ...

Each parses its flags (podman's names) and calls the library: transports for
load/save/import (one `copy` routine), the store facade for the rest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from corral.cli import errors

FORMATS = {"docker-archive": "docker-archive", "oci-archive": "oci-archive", "oci-dir": "oci",
           "docker-dir": None}


def register(commands: Any) -> None:
    p = commands.add_parser("load", help="load images from a docker-archive or oci-archive")
    p.add_argument("-i", "--input", default="-", help="archive to read (default stdin)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_load)

    p = commands.add_parser("save", help="save images to an archive or OCI layout")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--format", default="docker-archive",
                   choices=("docker-archive", "oci-archive", "oci-dir"))
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_save)

    p = commands.add_parser("import", help="make a one-layer image from a rootfs tar")
    p.add_argument("file", metavar="FILE|-")
    p.add_argument("reference", nargs="?", metavar="REFERENCE")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_import)

    p = commands.add_parser("images", help="list images")
    _images_flags(p)

    p = commands.add_parser("rmi", help="remove images")
    _rmi_flags(p)

    p = commands.add_parser("tag", help="give an image another name")
    p.add_argument("source", metavar="IMAGE")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.set_defaults(func=cmd_tag)

    p = commands.add_parser("inspect", help="show an image's details as JSON")
    _inspect_flags(p)

    p = commands.add_parser("history", help="show an image's history")
    _history_flags(p)

    image = commands.add_parser("image", help="manage images")
    sub = image.add_subparsers(dest="image_command", metavar="COMMAND",
                               parser_class=type(image))
    sub.required = True
    p = sub.add_parser("prune", help="remove unused images, layers and blobs")
    p.add_argument("-a", "--all", action="store_true",
                   help="all images no container uses, not only unnamed ones")
    p.add_argument("-f", "--force", action="store_true", help="do not ask (never asks)")
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("busybox", help="make a busybox image from the host's static busybox")
    p.add_argument("name", nargs="?", default="busybox")
    p.add_argument("--busybox", default="/bin/busybox")
    p.set_defaults(func=cmd_busybox)
    p = sub.add_parser("debian", help="make a Debian image with debootstrap --variant=minbase")
    p.add_argument("name", nargs="?", default="debian")
    p.add_argument("--suite")
    p.add_argument("--mirror")
    p.set_defaults(func=cmd_debian)
    for name, flags in (("ls", _images_flags), ("list", _images_flags), ("rm", _rmi_flags),
                        ("inspect", _inspect_flags), ("history", _history_flags)):
        flags(sub.add_parser(name))


def _images_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("-a", "--all", action="store_true",
                   help="also the intermediate images of builds (the build cache)")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", help="json")
    p.add_argument("filter", nargs="?", metavar="REPOSITORY")
    p.set_defaults(func=cmd_images)


def _rmi_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true",
                   help="also remove containers using the images")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi, codes=errors.REMOVE_CODES)


def _inspect_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--format", help="only 'json' (the default)")
    p.set_defaults(func=cmd_inspect)


def _history_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", help="json")
    p.set_defaults(func=cmd_history)


# -- helpers ---------------------------------------------------------------------


def _spool_stdin(ctx: Any) -> str:
    tmp = tempfile.NamedTemporaryFile(dir=ctx.tmpdir, prefix="stdin-", delete=False)  # noqa: SIM115
    with tmp:
        shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
    return tmp.name


def _familiar(name: str) -> tuple[str, str]:
    """(repository, tag) for display: docker.io/library/busybox:latest -> (docker.io/library/busybox, latest)."""
    repo, _, tag = name.rpartition(":")
    if "/" in tag or not repo:
        return name, "<none>"
    return repo, tag


def _image_config(store: Any, record: Any) -> Any:
    from corral.oci.image import ImageConfig

    return ImageConfig.from_bytes(store.content.read_bytes(record.id, max_size=16 << 20))


def _image_size(store: Any, record: Any) -> int:
    if record.top_layer is None:
        return 0
    return sum(layer.size for layer in store.layers.chain(record.top_layer))


def human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return str(size)


def human_ago(created: str) -> str:
    try:
        stamp = time.mktime(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except (ValueError, TypeError):
        return created or "unknown"
    delta = max(0, time.time() - stamp)
    for seconds, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"),
                          (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if delta >= seconds:
            n = int(delta // seconds)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "Less than a second ago"


def _names_of(store: Any, image_id: str) -> list[str]:
    return list(store.images.get(image_id).names)


# -- commands --------------------------------------------------------------------


def cmd_load(args: argparse.Namespace, ctx: Any) -> int:
    from corral.image import transports
    from corral.image.transports.store import StoreReference

    path = args.input
    spooled = None
    if path == "-":
        if sys.stdin.isatty():
            raise errors.UsageError("load: no archive given (-i FILE or a pipe on stdin)")
        path = spooled = _spool_stdin(ctx)
    try:
        source = transports.detect(path, tmpdir=ctx.tmpdir)
        copied = transports.copy(source, StoreReference(ctx.store))
    finally:
        if spooled:
            import os

            os.unlink(spooled)
    for image in copied:
        names = _names_of(ctx.store, image.id) if image.names else []
        shown = [n for n in image.names if n in names] or [image.id]
        for name in shown:
            if not args.quiet:
                print(f"Loaded image: {name}")
    return 0


def cmd_save(args: argparse.Namespace, ctx: Any) -> int:
    from corral.image import transports
    from corral.image.transports.store import StoreReference

    transport = FORMATS[args.format]
    sources = [StoreReference(ctx.store, name) for name in args.images]
    for source in sources:
        ctx.store.image(source.name)  # ImageNotFound before anything is written
    destination = transports.parse(f"{transport}:{args.output}", tmpdir=ctx.tmpdir)
    transports.copy(sources, destination)
    return 0


def cmd_import(args: argparse.Namespace, ctx: Any) -> int:
    from corral.image import transports
    from corral.image.transports.store import StoreReference, normalize_name
    from corral.image.transports.tarball import TarballReference

    name = args.reference
    if name is not None:
        normalize_name(name)
    source = TarballReference(args.file, args.change, args.message, tmpdir=ctx.tmpdir)
    copied = transports.copy(source, StoreReference(ctx.store, name))
    print(copied[0].id.split(":", 1)[1] if not args.quiet else copied[0].id)
    return 0


def cmd_images(args: argparse.Namespace, ctx: Any) -> int:
    store = ctx.store
    rows = []
    for record in sorted(store.list_images(), key=lambda r: r.created, reverse=True):
        if not record.names and not getattr(args, "all", True) and \
                (record.metadata or {}).get("corral.build.intermediate"):
            continue  # a build's cache, like podman's intermediate images (`-a` shows them)
        names = list(record.names) or [None]
        for name in names:
            if args.filter:
                from corral.oci.reference import Reference

                try:
                    wanted = Reference.parse(args.filter, default_tag=False)
                except Exception:  # noqa: S112, BLE001
                    continue
                if name is None or not name.startswith(wanted.name):
                    continue
            rows.append((record, name))
    if args.format == "json":
        out = []
        seen = set()
        for record, _name in rows:
            if record.id in seen:
                continue
            seen.add(record.id)
            out.append({"Id": record.id.split(":", 1)[1], "Names": list(record.names),
                        "Digest": record.manifest_digest, "Created": record.created,
                        "Size": _image_size(store, record), "Dangling": not record.names})
        print(json.dumps(out, indent=4))
        return 0
    if args.quiet:
        seen_ids: list[str] = []
        for record, _name in rows:
            short = record.id if args.no_trunc else record.short_id
            if short not in seen_ids:
                seen_ids.append(short)
        if seen_ids:
            print("\n".join(seen_ids))
        return 0
    table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")]
    for record, name in rows:
        repo, tag = _familiar(name) if name else ("<none>", "<none>")
        table.append((repo, tag, record.id if args.no_trunc else record.short_id,
                      human_ago(record.created), human_size(_image_size(store, record))))
    _print_table(table)
    return 0


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _image_blobs(store: Any, record: Any) -> set[str]:
    blobs = {record.id}
    if record.manifest_digest:
        blobs.add(record.manifest_digest)
        try:
            manifest = json.loads(store.content.read_bytes(record.manifest_digest, 16 << 20))
            blobs.update(d["digest"] for d in manifest.get("layers") or [])
        except Exception:  # noqa: S110, BLE001 - nothing more to clean
            pass
    return blobs


def remove_image(store: Any, ref: str, force: bool) -> list[str]:
    """rmi of one reference: untag a name the image shares, else remove it and its blobs."""
    from corral.storage.errors import ImageInUse

    lines = []
    with store.locked():
        record = store.image(ref)
        name = None
        for candidate in record.names:
            if candidate == ref:
                name = candidate
        if name is None:
            try:
                from corral.oci.reference import Reference

                normalized = str(Reference.parse(ref))
                name = normalized if normalized in record.names else None
            except Exception:  # noqa: BLE001 - an id
                name = None
        if name is not None and len(record.names) > 1:
            store.untag(record.id, name)
            return [f"Untagged: {name}"]
        if name is None and len(record.names) > 1 and not force:
            raise ImageInUse(f"image {record.short_id} has several names "
                             f"({', '.join(record.names)}): remove them by name, or use -f")
        blobs = _image_blobs(store, record)
        users = [c for c in store.list_containers() if c.image == record.id]
        if users and not force:
            raise ImageInUse(f"image {ref} ({record.short_id}) is in use by container(s) "
                             + ", ".join(c.names[0] if c.names else c.id[:12] for c in users)
                             + ": remove them first, or use rmi -f")
        for container in users:
            _stop_runtime_container(store, container)
        store.remove_image(record.id, force=force)
        referenced = store.referenced_blobs()
        for digest in blobs - referenced:
            try:
                store.content.delete(digest)
            except Exception:  # noqa: S110, BLE001
                pass
        lines += [f"Untagged: {n}" for n in record.names]
        lines.append(f"Deleted: {record.id.split(':', 1)[1]}")
    return lines


def _stop_runtime_container(store: Any, container: Any) -> None:
    from corral.cli.container import runtime_delete

    runtime_delete(store, container.id, force=True)


def cmd_rmi(args: argparse.Namespace, ctx: Any) -> int:
    store = ctx.store
    refs = list(args.images)
    if args.all:
        refs = [r.id for r in store.list_images()]
    elif not refs:
        raise errors.UsageError("rmi: name at least one image (or -a)")
    failure: BaseException | None = None
    for ref in refs:
        try:
            for line in remove_image(store, ref, args.force):
                print(line)
        except Exception as exc:  # noqa: BLE001 - go on with the others, like podman
            errors.report(exc)
            failure = failure or exc
    if failure is not None:
        return errors.exit_code(failure, errors.REMOVE_CODES)
    return 0


def cmd_tag(args: argparse.Namespace, ctx: Any) -> int:
    from corral.image.transports.store import normalize_name

    targets = [normalize_name(target) for target in args.targets]
    record = ctx.store.image(args.source)
    for target in targets:
        ctx.store.tag(record.id, target)
    return 0


def inspect_image(store: Any, record: Any) -> dict:
    config = _image_config(store, record)
    chain = store.layers.chain(record.top_layer) if record.top_layer else []
    repo_digests = []
    if record.manifest_digest:
        for name in record.names:
            repo_digests.append(f"{name.rpartition(':')[0] or name}@{record.manifest_digest}")
    return {
        "Id": record.id.split(":", 1)[1],
        "Digest": record.manifest_digest,
        "RepoTags": list(record.names),
        "RepoDigests": repo_digests,
        "Created": config.created,
        "Config": config.config,
        "Version": config.raw.get("docker_version", ""),
        "Author": config.author or "",
        "Architecture": config.architecture,
        "Os": config.os,
        "Size": sum(layer.size for layer in chain),
        "RootFS": {"Type": "layers", "Layers": config.diff_ids},
        "Labels": config.labels or None,
        "History": config.history,
        "ManifestType": "application/vnd.oci.image.manifest.v1+json",
        "NamesHistory": list(record.names),
        "TopLayer": record.top_layer,
    }


def cmd_inspect(args: argparse.Namespace, ctx: Any) -> int:
    out = []
    failure = None
    for ref in args.images:
        try:
            out.append(inspect_image(ctx.store, ctx.store.image(ref)))
        except Exception as exc:  # noqa: BLE001
            failure = failure or exc
            errors.report(exc)
    print(json.dumps(out, indent=4))
    return errors.exit_code(failure) if failure is not None else 0


def cmd_history(args: argparse.Namespace, ctx: Any) -> int:
    store = ctx.store
    record = store.image(args.image)
    config = _image_config(store, record)
    chain = store.layers.chain(record.top_layer) if record.top_layer else []
    sizes = [layer.size for layer in chain]
    history = config.history or [{"created": config.created} for _ in config.diff_ids]
    rows = []
    layer_index = 0
    for entry in history:
        size = 0
        if not entry.get("empty_layer"):
            size = sizes[layer_index] if layer_index < len(sizes) else 0
            layer_index += 1
        rows.append((entry, size))
    rows.reverse()
    if args.format == "json":
        print(json.dumps([{"created": e.get("created"), "createdBy": e.get("created_by", ""),
                           "size": s, "comment": e.get("comment", "")} for e, s in rows],
                         indent=4))
        return 0
    table = [("ID", "CREATED", "CREATED BY", "SIZE", "COMMENT")]
    for i, (entry, size) in enumerate(rows):
        ident = record.short_id if i == 0 else "<missing>"
        created_by = entry.get("created_by", "")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:42] + "..."
        table.append((ident, human_ago(entry.get("created") or ""), created_by,
                      human_size(size), entry.get("comment", "")))
    if args.quiet:
        print(record.short_id)
        return 0
    _print_table(table)
    return 0


def cmd_prune(args: argparse.Namespace, ctx: Any) -> int:
    store = ctx.store
    used = {c.image for c in store.list_containers()}
    for record in store.list_images():
        if record.id in used or (record.names and not args.all):
            continue
        for line in remove_image(store, record.id, force=True):
            if line.startswith("Deleted: "):
                print(line.split(" ", 1)[1])
    store.prune()
    return 0


def cmd_busybox(args: argparse.Namespace, ctx: Any) -> int:
    from corral.image.base import make_busybox
    from corral.image.transports.store import normalize_name

    normalize_name(args.name)
    copied = make_busybox(ctx.store, args.name, args.busybox)
    print(copied.id.split(":", 1)[1])
    return 0


def cmd_debian(args: argparse.Namespace, ctx: Any) -> int:
    from corral.image.base import make_debian
    from corral.image.transports.store import normalize_name

    normalize_name(args.name)
    copied = make_debian(ctx.store, args.name, suite=args.suite, mirror=args.mirror)
    print(copied.id.split(":", 1)[1])
    return 0
