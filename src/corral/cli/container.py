"""Container commands: create, run, rm, ps, export.

MINIMAL, until the engine of issue 6 exists: no detached containers, logs,
restart or networking beyond a private (or the host's) network namespace.
`create` makes the container's read-write layer in the store and writes its
runtime bundle (`<store>/storage/containers/<id>/config.json`, root.path
`merged`, from `corral.image.runtime_spec`); `run` does that, mounts the rootfs,
runs `<runtime> run` in the foreground with this terminal's stdio and passes
the exit code through (`--rm`: then removes it). The runtime is any runc-CLI
OCI runtime, with its state under `<store>/runtime`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from corral.cli import errors
from corral.errors import FailedPrecondition, InvalidArgument, NotFound


class ContainerRunning(FailedPrecondition):
    """The container is running; stop it first or use --force."""


def register(commands: Any) -> None:
    for name in ("create", "run"):
        p = commands.add_parser(name, help=("create a container" if name == "create"
                                            else "run a command in a new container"))
        p.add_argument("--name")
        p.add_argument("-e", "--env", action="append", default=[])
        p.add_argument("-w", "--workdir")
        p.add_argument("-u", "--user")
        p.add_argument("--entrypoint")
        p.add_argument("-t", "--tty", action="store_true")
        p.add_argument("-i", "--interactive", action="store_true")
        p.add_argument("--hostname")
        p.add_argument("--network", "--net", default="private",
                       choices=("private", "none", "host", "bridge"),
                       help="host: the host's network; otherwise a private one (lo only)")
        p.add_argument("--read-only", action="store_true")
        if name == "run":
            p.add_argument("--rm", action="store_true", help="remove the container when it exits")
        p.add_argument("image", metavar="IMAGE")
        p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
        p.set_defaults(func=cmd_create if name == "create" else cmd_run)

    p = commands.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.set_defaults(func=cmd_rm, codes=errors.REMOVE_CODES)

    p = commands.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", help="json")
    p.set_defaults(func=cmd_ps)

    p = commands.add_parser("export", help="write a container's filesystem as a tar")
    p.add_argument("-o", "--output", help="file (default stdout)")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_export)


# -- runtime helpers ------------------------------------------------------------------


def _runtime(store: Any) -> tuple[str, str]:
    from corral.cli.main import _default_runtime

    runtime = os.environ.get("CORRAL_OCI_RUNTIME") or _default_runtime()
    return runtime, str(Path(store.root) / "runtime")


def runtime_state(store: Any, container_id: str, runtime: str | None = None) -> str | None:
    """The runtime's status for the container, or None if the runtime does not know it."""
    binary, root = _runtime(store)
    result = subprocess.run([runtime or binary, "--root", root, "state", container_id],
                            capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout).get("status")
    except ValueError:
        return None


def runtime_delete(store: Any, container_id: str, *, force: bool,
                   runtime: str | None = None) -> None:
    binary, root = _runtime(store)
    argv = [runtime or binary, "--root", root, "delete"] + (["--force"] if force else []) \
        + [container_id]
    subprocess.run(argv, capture_output=True, timeout=60, check=False)


# -- create / run ---------------------------------------------------------------------


def _check_name(name: str | None) -> None:
    import re

    if name is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise InvalidArgument(f"container name {name!r} is not valid ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")


def create_container(args: argparse.Namespace, ctx: Any) -> Any:
    """The container record, its RW layer and bundle (config.json); rootfs left unmounted."""
    from corral.image.runtime_spec import spec_for, validate
    from corral.oci.image import ImageConfig

    store = ctx.store
    _check_name(args.name)
    image = store.image(args.image)
    config = ImageConfig.from_bytes(store.content.read_bytes(image.id, max_size=16 << 20))
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = json.loads(args.entrypoint) if args.entrypoint.startswith("[") \
            else ([args.entrypoint] if args.entrypoint else [])
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    record = store.create_container(image.id, names=[args.name] if args.name else [],
                                    metadata={"image_name": args.image})
    try:
        rootfs = store.mount(record.id)
        try:
            spec = spec_for(config, rootfs, command=command or None, entrypoint=entrypoint,
                            env=args.env, workdir=args.workdir, user=args.user,
                            terminal=args.tty, hostname=args.hostname or record.id[:12],
                            root_path="merged", readonly=args.read_only,
                            network="host" if args.network == "host" else "private",
                            annotations={"io.corral.image": image.id})
            validate(spec)
        finally:
            store.unmount(record.id)
        bundle = store.container_dir(record.id)
        tmp = bundle / "config.json.tmp"
        tmp.write_text(json.dumps(spec, indent=2))
        os.replace(tmp, bundle / "config.json")
        store.containers.set_metadata(record.id, command=spec["process"]["args"])
    except BaseException:
        store.remove_container(record.id)
        raise
    return store.container(record.id)


def cmd_create(args: argparse.Namespace, ctx: Any) -> int:
    record = create_container(args, ctx)
    print(record.id)
    return 0


def cmd_run(args: argparse.Namespace, ctx: Any) -> int:
    store = ctx.store
    record = create_container(args, ctx)
    code = errors.EXIT_ERROR
    try:
        store.mount(record.id)
        try:
            argv = [ctx.runtime, "--root", ctx.runtime_root, "run", "--bundle",
                    str(store.container_dir(record.id)), record.id]
            stdin = None if (args.interactive or args.tty) else subprocess.DEVNULL
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                proc = subprocess.Popen(argv, stdin=stdin)
                signal.signal(signal.SIGINT, lambda *_: proc.send_signal(signal.SIGINT))
                code = proc.wait()
            finally:
                signal.signal(signal.SIGINT, previous)
            if code < 0:
                code = 128 - code
        finally:
            runtime_delete(store, record.id, force=True, runtime=ctx.runtime)
            store.unmount(record.id, force=True)
        if not args.rm:
            store.containers.set_metadata(record.id, exit_code=code)
    finally:
        if args.rm:
            store.remove_container(record.id)
    return code


# -- rm / ps / export -------------------------------------------------------------------


def cmd_rm(args: argparse.Namespace, ctx: Any) -> int:
    store = ctx.store
    refs = [c.id for c in store.list_containers()] if args.all else list(args.containers)
    if not refs and not args.all:
        raise errors.UsageError("rm: name at least one container (or -a)")
    failure: BaseException | None = None
    for ref in refs:
        try:
            record = store.container(ref)
            status = runtime_state(store, record.id, ctx.runtime)
            if status in ("running", "paused", "created") and not args.force:
                raise ContainerRunning(f"container {ref} is {status}: stop it first or use -f")
            runtime_delete(store, record.id, force=True, runtime=ctx.runtime)
            store.remove_container(record.id)
            print(record.id)
        except Exception as exc:  # noqa: BLE001 - go on with the others
            errors.report(exc)
            failure = failure or exc
    return errors.exit_code(failure, errors.REMOVE_CODES) if failure is not None else 0


def _status(store: Any, record: Any, runtime: str) -> str:
    status = runtime_state(store, record.id, runtime)
    if status is not None:
        return status.capitalize()
    if "exit_code" in record.metadata:
        return f"Exited ({record.metadata['exit_code']})"
    return "Created"


def cmd_ps(args: argparse.Namespace, ctx: Any) -> int:
    from corral.cli.image import _print_table, human_ago

    store = ctx.store
    rows = []
    for record in sorted(store.list_containers(), key=lambda r: r.created, reverse=True):
        status = _status(store, record, ctx.runtime)
        if not args.all and not status.startswith(("Running", "Paused")):
            continue
        rows.append((record, status))
    if args.format == "json":
        print(json.dumps([{"Id": r.id, "Names": list(r.names), "Image": r.metadata.get(
            "image_name"), "ImageID": r.image, "Command": r.metadata.get("command"),
            "Created": r.created, "State": s} for r, s in rows], indent=4))
        return 0
    if args.quiet:
        for record, _ in rows:
            print(record.id if args.no_trunc else record.id[:12])
        return 0
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for record, status in rows:
        command = " ".join(record.metadata.get("command") or [])
        if not args.no_trunc and len(command) > 20:
            command = command[:17] + "..."
        table.append((record.id if args.no_trunc else record.id[:12],
                      str(record.metadata.get("image_name") or (record.image or "")[:19]),
                      command, human_ago(record.created), status, ",".join(record.names)))
    _print_table(table)
    return 0


def cmd_export(args: argparse.Namespace, ctx: Any) -> int:
    import tempfile

    from corral.image.layer_diff import diff_dirs

    store = ctx.store
    record = store.container(args.container)
    if args.output is None and sys.stdout.isatty():
        raise errors.UsageError("export: refusing to write a tar to a terminal (use -o FILE)")
    rootfs = store.mount(record.id)
    empty = Path(tempfile.mkdtemp(prefix="export-empty-", dir=ctx.tmpdir))
    try:
        if args.output is None:
            diff_dirs(empty, rootfs, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            out_path = Path(args.output)
            if not out_path.parent.is_dir():
                raise NotFound(f"{out_path}: directory {out_path.parent} does not exist")
            tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
            try:
                with open(tmp, "wb") as out:
                    diff_dirs(empty, rootfs, out)
                os.replace(tmp, out_path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    finally:
        empty.rmdir()
        store.unmount(record.id)
    return 0
