"""Registry commands: pull, push, login, logout (podman's names and flags).

`pull REF` copies `docker://REF` into the store, `push IMAGE [DEST]` copies
`containers-storage:IMAGE` to DEST (`docker://...` or any transport; default
the image's own name in its registry) — both through the one copy routine.
`login` checks the credentials against the registry before storing them;
`logout` removes them (see corral.registry.client.auth for the files).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from corral.cli import errors


def _registry_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-verify", default=None, type=_bool, metavar="BOOL",
                   help="require https and verify certificates (default: true, except for "
                        "insecure registries in registries.conf and loopback)")
    p.add_argument("--cert-dir", help="directory with *.crt CA files and *.cert/*.key")
    p.add_argument("--authfile", help="auth file (default: see `corral login --help`)")
    p.add_argument("--registries-conf", help="registries.conf (default "
                                             "$CORRAL_REGISTRIES_CONF or /etc/corral/registries.conf)")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def register(commands: Any) -> None:
    p = commands.add_parser("pull", help="pull an image from a registry")
    p.add_argument("reference", metavar="IMAGE")
    p.add_argument("--platform", help="OS/ARCH[/VARIANT] (default linux/amd64)")
    p.add_argument("--creds", help="USER[:PASSWORD] for this pull")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--retry", type=int, default=4, help="retries of a failed request")
    _registry_flags(p)
    p.set_defaults(func=cmd_pull)

    p = commands.add_parser("push", help="push an image to a registry")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("destination", nargs="?", metavar="DESTINATION")
    p.add_argument("--creds", help="USER[:PASSWORD] for this push")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--retry", type=int, default=4, help="retries of a failed request")
    p.add_argument("--digestfile", help="write the manifest digest to this file")
    _registry_flags(p)
    p.set_defaults(func=cmd_push)

    p = commands.add_parser("login", help="log in to a registry")
    p.add_argument("registry", metavar="REGISTRY")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    _registry_flags(p)
    p.set_defaults(func=cmd_login)

    p = commands.add_parser("logout", help="log out of a registry")
    p.add_argument("registry", nargs="?", metavar="REGISTRY")
    p.add_argument("-a", "--all", action="store_true", help="remove every stored login")
    p.add_argument("--authfile")
    p.set_defaults(func=cmd_logout)


def _options(args: argparse.Namespace, ctx: Any, *, quiet: bool = False) -> Any:
    from corral.registry.client.config import RegistryOptions
    from corral.registry.client.progress import for_terminal

    opts = RegistryOptions(tls_verify=args.tls_verify, cert_dir=args.cert_dir,
                           authfile=args.authfile, conf_path=args.registries_conf)
    creds = getattr(args, "creds", None)
    if creds:
        opts.username, _, opts.password = creds.partition(":")
    platform = getattr(args, "platform", None)
    if platform:
        parts = platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise errors.UsageError(f"--platform {platform!r}: expected OS/ARCH[/VARIANT]")
        opts.platform = (parts[0], parts[1], parts[2] if len(parts) == 3 else None)
    if getattr(args, "retry", None) is not None:
        opts.retries = max(0, args.retry)
    opts.progress = for_terminal(quiet or getattr(args, "quiet", False))
    opts.blob_cache = str(ctx.root / "cache" / "blob-locations.json")
    return opts


def _location(text: str, default_transport: str = "docker://") -> str:
    from corral.image.transports import TRANSPORTS

    transport, sep, _ = text.partition(":")
    if sep and transport in TRANSPORTS and (transport != "docker" or text.startswith("docker://")):
        return text
    return default_transport + text


class _OpenedSource:
    """A source reference whose source is open and resolved already (for `copy`)."""

    def __init__(self, ref: Any, source: Any) -> None:
        self.ref = ref
        self.source = source

    def open_source(self) -> Any:
        return self.source

    def __str__(self) -> str:
        return str(self.ref)


def cmd_pull(args: argparse.Namespace, ctx: Any) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from corral.image import transports

    opts = _options(args, ctx)
    try:
        source = transports.parse(_location(args.reference), registry=opts, tmpdir=ctx.tmpdir)
        # the store opens (or is made) while the manifest and config come
        with ThreadPoolExecutor(1, thread_name_prefix="corral-store") as pool:
            store = pool.submit(lambda: ctx.store)
            opened = source.open_source()
            try:
                opened.images()
                dest = transports.parse("containers-storage:", store=store.result())
            except BaseException:
                opened.close()
                raise
        copied = transports.copy(_OpenedSource(source, opened), dest,  # type: ignore[arg-type]
                                 progress=opts.progress)
    finally:
        opts.progress.close()
    for image in copied:
        print(image.id.partition(":")[2])
    return 0


def cmd_push(args: argparse.Namespace, ctx: Any) -> int:
    from corral.image import transports
    from corral.image.transports.store import normalize_name

    opts = _options(args, ctx)
    store = ctx.store
    record = store.image(args.image)
    target = args.destination
    if target is None:
        hex_id = record.id.partition(":")[2]
        given = args.image.removeprefix("sha256:")
        if hex_id.startswith(given):
            raise errors.UsageError(f"push {args.image}: name a destination (an image id "
                                    "has no registry)")
        target = normalize_name(args.image)
    dest = transports.parse(_location(target), registry=opts, store=store, tmpdir=ctx.tmpdir)
    source = transports.parse(f"containers-storage:{args.image}", store=store)
    try:
        transports.copy(source, dest, progress=opts.progress)
    finally:
        opts.progress.close()
    digest = getattr(dest, "pushed_digest", None)
    if args.digestfile and digest:
        with open(args.digestfile, "w") as f:
            f.write(digest)
    return 0


def _registry_host(text: str) -> str:
    for scheme in ("https://", "http://"):
        text = text.removeprefix(scheme)
    text = text.rstrip("/")
    if text in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return text


def cmd_login(args: argparse.Namespace, ctx: Any) -> int:
    from corral.registry.client import auth
    from corral.registry.client.client import Registry
    from corral.registry.client.config import DOCKER_HUB_API
    from corral.registry.client.errors import Unauthorized

    opts = _options(args, ctx, quiet=True)
    name = _registry_host(args.registry)
    username = args.username
    password = args.password
    if args.password_stdin:
        if password is not None:
            raise errors.UsageError("--password and --password-stdin cannot be used together")
        password = sys.stdin.readline().rstrip("\r\n")
    if username is None:
        if not sys.stdin.isatty():
            raise errors.UsageError("login: give -u USER (no terminal to ask on)")
        username = input("Username: ")
    if password is None:
        if not sys.stdin.isatty():
            raise errors.UsageError("login: give -p PASSWORD or --password-stdin")
        password = getpass.getpass("Password: ")
    opts.username, opts.password = username, password
    host = name.split("/")[0]
    registry = Registry(DOCKER_HUB_API if host == "docker.io" else host, opts)
    try:
        registry.request("GET", "/v2/", f"logging into {name}", (), retry=False).close()
    except Unauthorized as exc:
        raise Unauthorized(f"logging into {name}: invalid username/password "
                           f"({exc.status or 'refused'})", exc.status) from None
    finally:
        registry.close()
    path = auth.store(name, auth.Credentials(username, password), args.authfile)
    print("Login Succeeded!")
    if ctx.debug:
        print(f"credentials stored in {path}", file=sys.stderr)
    return 0


def cmd_logout(args: argparse.Namespace, ctx: Any) -> int:
    from corral.registry.client import auth

    if args.all:
        for path in [auth.write_target(args.authfile)] + (
                [] if args.authfile else [p for p in (auth.containers_authfile(),
                                                      auth.corral_authfile()) if p]):
            data = auth._load(path)
            if data.get("auths"):
                data["auths"] = {}
                auth._save(path, data)
        print("Removed login credentials for all registries")
        return 0
    if not args.registry:
        raise errors.UsageError("logout: name a registry or give --all")
    name = _registry_host(args.registry)
    auth.remove(name, args.authfile)
    print(f"Removed login credentials for {name}")
    return 0
