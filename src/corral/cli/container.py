"""Container commands over `corral.engine.Engine` (docs/design/engine.md).

create, run, start, stop, restart, kill, rm, ps, logs, exec, attach, wait, pause,
unpause, export, `inspect` (containers, then images), and `container <verb>` for each
of them plus the hidden `container cleanup ID` (conmon's exit command). This module
only parses; the engine does the work. Exit codes like docker's: 125 engine error,
126 cannot invoke, 127 not found, else the container's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from corral.cli import errors

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any


def _engine(ctx: Any) -> Any:
    engine = getattr(ctx, "engine", None)
    if engine is None:
        from corral.engine.engine import Engine

        engine = Engine(root=ctx.root, storage_driver=ctx.driver, runtime=None)
        engine.cli_runtime = ctx.runtime
        engine.config = getattr(ctx, "config", None)
        ctx.engine = engine
    return engine


def _run_flags(p: argparse.ArgumentParser, run: bool) -> None:
    a = p.add_argument
    a("--name")
    a("-e", "--env", action="append", default=[])
    a("-w", "--workdir")
    a("-u", "--user")
    a("--entrypoint")
    a("-t", "--tty", action="store_true")
    a("-i", "--interactive", action="store_true")
    a("-h", "--hostname")
    a("--network", "--net", action="append", default=[], metavar="MODE|NAME[,NAME]",
      help="bridge (the default network), none, private (loopback only), host, "
      "container:ID, or network names (repeatable); default: containers.netns")
    a("--network-alias", action="append", default=[], help="another name on the networks")
    a("--ip", help="the IPv4/IPv6 address on the (first) network")
    a("--mac-address", help="the MAC address of the (first) network's interface")
    a("-p", "--publish", action="append", default=[],
      help="[ip:][hostPort:]containerPort[/proto] (ranges too)")
    a("-P", "--publish-all", action="store_true", help="publish every EXPOSEd port")
    a("--dns", action="append", default=[], help="a nameserver for resolv.conf")
    a("--dns-search", action="append", default=[], help="a search domain")
    a("--dns-option", action="append", default=[], help="a resolv.conf option")
    a("--add-host", action="append", default=[], help="NAME:IP, added to /etc/hosts")
    a("--read-only", action="store_true")
    a("--restart", default="no", help="no, on-failure[:N], always, unless-stopped")
    a("--stop-signal")
    a("--stop-timeout", type=int, default=10)
    a("-l", "--label", action="append", default=[], help="KEY=VALUE")
    a("--runtime", dest="container_runtime", help="corral-runtime (default), runc, runsc, "
      "or a path")
    a("--rm", action="store_true", help="remove the container when it exits")
    if run:
        a("-d", "--detach", action="store_true")
        a("--detach-keys")
    try:
        from corral.cli.run_options import add_run_options
    except ImportError:
        pass
    else:
        add_run_options(p)
    a("image", metavar="IMAGE")
    a("command", nargs=argparse.REMAINDER, metavar="COMMAND")


class _Unbuilt:
    """Stands for a parser that the command being parsed cannot reach."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_defaults(self, **kwargs: Any) -> None:
        pass


_UNBUILT = _Unbuilt()


def register(commands: Any) -> None:
    from corral.cli import main

    parsers: dict[str, argparse.ArgumentParser] = {}
    # `corral run ...`: only `run`'s parser is reachable, the others are not built
    # (argparse's add_argument was most of the CLI's start-up)
    only = main.COMMAND_WORD if main.COMMAND_WORD not in (None, "container", "inspect") \
        else None

    def add(name: str, help: str, func: Any, sub: Any = commands, **kw: Any
            ) -> argparse.ArgumentParser:
        if only is not None and name != only and sub is commands:
            return _UNBUILT  # type: ignore[return-value]
        p = sub.add_parser(name, help=help, add_help=name not in ("create", "run"), **kw)
        if name in ("create", "run"):
            p.add_argument("--help", action="help")
        p.set_defaults(func=func)
        parsers[name] = p
        return p

    def verbs(sub: Any) -> None:
        _run_flags(add("create", "create a container", cmd_create, sub), False)
        _run_flags(add("run", "run a command in a new container", cmd_run, sub), True)
        p = add("start", "start containers", cmd_start, sub)
        p.add_argument("-a", "--attach", action="store_true")
        p.add_argument("-i", "--interactive", action="store_true")
        p.add_argument("--detach-keys")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        for name, help_ in (("stop", "stop containers"), ("restart", "restart containers")):
            p = add(name, help_, cmd_stop if name == "stop" else cmd_restart, sub)
            p.add_argument("-t", "--time", type=int, dest="timeout")
            p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p = add("kill", "send a signal to containers", cmd_kill, sub)
        p.add_argument("-s", "--signal", default="SIGKILL")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p = add("rm", "remove containers", cmd_rm, sub)
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("containers", nargs="*", metavar="CONTAINER")
        p.set_defaults(codes=errors.REMOVE_CODES)
        p = add("ps", "list containers", cmd_ps, sub)
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--no-trunc", action="store_true")
        p.add_argument("-f", "--filter", action="append", default=[])
        p.add_argument("--format", help="table, json, or a Go-like template {{.Field}}")
        p = add("logs", "show a container's output", cmd_logs, sub)
        p.add_argument("-f", "--follow", action="store_true")
        p.add_argument("--since")
        p.add_argument("--tail", type=int)
        p.add_argument("-t", "--timestamps", action="store_true")
        p.add_argument("container", metavar="CONTAINER")
        p = add("exec", "run a command in a running container", cmd_exec, sub)
        p.add_argument("-i", "--interactive", action="store_true")
        p.add_argument("-t", "--tty", action="store_true")
        p.add_argument("-u", "--user")
        p.add_argument("-e", "--env", action="append", default=[])
        p.add_argument("-w", "--workdir")
        p.add_argument("-d", "--detach", action="store_true")
        p.add_argument("--detach-keys")
        p.add_argument("container", metavar="CONTAINER")
        p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
        p = add("attach", "attach to a running container", cmd_attach, sub)
        p.add_argument("--no-stdin", action="store_true")
        p.add_argument("--detach-keys")
        p.add_argument("container", metavar="CONTAINER")
        p = add("wait", "wait for containers to exit; print their exit codes", cmd_wait, sub)
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        for name in ("pause", "unpause"):
            p = add(name, f"{name} containers", cmd_pause if name == "pause" else cmd_unpause,
                    sub)
            p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p = add("export", "write a container's filesystem as a tar", cmd_export, sub)
        p.add_argument("-o", "--output", help="file (default stdout)")
        p.add_argument("container", metavar="CONTAINER")

    verbs(commands)
    inspect = commands.choices.get("inspect")
    if inspect is not None:  # `corral inspect` takes containers too
        inspect.set_defaults(func=cmd_inspect)

    if main.COMMAND_WORD not in (None, "container"):
        return  # `corral run ...`: the `container` noun's copies are unreachable
    parent = commands.add_parser("container", help="manage containers")
    sub = parent.add_subparsers(dest="container_command", metavar="COMMAND",
                                parser_class=type(parent))
    sub.required = True
    verbs(sub)
    p = sub.add_parser("inspect", help="show containers' details as JSON")
    p.add_argument("-f", "--format")
    p.add_argument("images", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_inspect, only_containers=True)
    p = sub.add_parser("cleanup")  # conmon's exit command; not for people
    p.add_argument("container")
    p.set_defaults(func=cmd_cleanup)


# -- create / run / start ----------------------------------------------------------------


def _config(args: argparse.Namespace, ctx: Any) -> Any:
    import json

    from corral.engine.config import ContainerConfig, RestartPolicy

    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = json.loads(args.entrypoint) if args.entrypoint.startswith("[") \
            else ([args.entrypoint] if args.entrypoint else [])
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    labels = {}
    for item in args.label:
        key, _, value = item.partition("=")
        if not key:
            raise errors.UsageError(f"--label: {item!r} has no key")
        labels[key] = value
    RestartPolicy.parse(args.restart)
    if args.stop_signal:
        from corral.engine.options import parse_signal

        parse_signal(args.stop_signal)
    runtime = args.container_runtime
    if runtime is None and ctx.runtime:
        runtime = ctx.runtime
    config = ContainerConfig(
        image=args.image, command=command or None, entrypoint=entrypoint, env=list(args.env),
        workdir=args.workdir, user=args.user, tty=args.tty, interactive=args.interactive,
        hostname=args.hostname,
        read_only=args.read_only,
        name=args.name, labels=labels, restart=args.restart, stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout, runtime=runtime, auto_remove=args.rm)
    try:
        from corral.cli.run_options import options_from_args
    except ImportError:
        pass
    else:
        config.update(options_from_args(args))
    from corral.engine.networking import parse_network_flags

    default_mode = getattr(getattr(ctx, "config", None), "netns", None) or "bridge"
    config.network, config.networks = parse_network_flags(args.network, default_mode)
    config.update({"network_aliases": list(args.network_alias), "ip": args.ip,
                   "mac_address": args.mac_address, "publish": list(args.publish),
                   "publish_all": args.publish_all, "dns": list(args.dns),
                   "dns_search": list(args.dns_search), "dns_options": list(args.dns_option),
                   "add_hosts": list(args.add_host)})
    return config


def cmd_create(args: argparse.Namespace, ctx: Any) -> int:
    c = _engine(ctx).create(_config(args, ctx))
    print(c.id)
    return 0


def cmd_run(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.attach import parse_detach_keys

    engine = _engine(ctx)
    config = _config(args, ctx)
    keys = parse_detach_keys(getattr(args, "detach_keys", None))
    from corral.cli import prelaunch

    c = engine.create(config, start_next=True, prelaunched=prelaunch.pending())
    if args.detach:
        try:
            engine.start(c.id)
        except BaseException:
            engine.remove(c.id, force=True)
            raise
        print(c.id)
        return 0
    return _start_attached(engine, c, interactive=args.interactive, keys=keys,
                           remove_on_fail=True, rm=args.rm)


def _start_attached(engine: Any, c: Any, *, interactive: bool, keys: bytes,
                    remove_on_fail: bool, rm: bool) -> int:
    from corral.engine import attach

    holder: dict[str, Any] = {}
    tty = c.config.tty
    stdin_fd = 0 if interactive and c.config.interactive else None

    def connect(container: Any) -> None:
        holder["sock"] = engine.attach_socket(container)
        if tty:
            size = attach.window_size(0) or attach.window_size(1)
            if size:
                engine.resize(container, *size)

    try:
        # the foreground CLI cleans up itself (below), unless a restart policy applies:
        # conmon's exit command then returns at once (engine/exit_hook.sh)
        cleans_up = rm or (c.config.restart or "no") == "no"
        engine.start(c.id, before_start=connect,
                     rm_client=os.getpid() if cleans_up else None)
    except BaseException:
        if remove_on_fail:
            engine.remove(c.id, force=True)
        raise
    return _pump(engine, c, holder["sock"], stdin_fd, keys, rm)


def _pump(engine: Any, c: Any, sock: Any, stdin_fd: int | None, keys: bytes, rm: bool) -> int:
    from corral.engine import attach

    tty = c.config.tty

    def winch() -> None:
        size = attach.window_size(0) or attach.window_size(1)
        if size:
            engine.resize(c, *size)

    with sock, attach.raw_terminal(stdin_fd if tty else None), \
                attach.on_winch(winch if tty else None):
        how = attach.pump_attach(sock, stdin_fd=stdin_fd, stdout_fd=1, stderr_fd=2,
                                 detach_keys=keys if stdin_fd is not None else b"")
    if how == "detached":
        print(f"\r\nDetached from {c.id[:12]}", file=sys.stderr)
        return 0
    code = engine.wait(c.id)
    if rm:
        try:
            if not engine.cleanup(c.id, from_monitor=False):
                engine.remove(c.id, force=True)
        except Exception:  # noqa: BLE001, S110 - gone already (conmon's cleanup removed it)
            pass
    elif (c.config.restart or "no") == "no":
        # Clean up here, as podman's foreground run does, so that when `run` returns the
        # rootfs is unmounted: conmon's exit command then finds nothing to do, and cannot
        # unmount under a command the user runs next (`export`, `cp`, `commit`).
        with contextlib.suppress(Exception):
            engine.cleanup(c.id, from_monitor=False)
    return errors.EXIT_ERROR if code is None else code


def cmd_start(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.attach import parse_detach_keys

    engine = _engine(ctx)
    if args.attach:
        if len(args.containers) != 1:
            raise errors.UsageError("start -a: exactly one container")
        c = engine.get(args.containers[0])
        return _start_attached(engine, c, interactive=args.interactive,
                               keys=parse_detach_keys(args.detach_keys), remove_on_fail=False,
                               rm=c.config.auto_remove)
    return _each(args.containers, lambda ref: engine.start(ref))


def _each(refs: list[str], action: Any, show: Any = None) -> int:
    failure: BaseException | None = None
    for ref in refs:
        try:
            result = action(ref)
            print(show(result) if show else ref)
        except Exception as exc:  # noqa: BLE001 - go on with the others
            errors.report(exc)
            failure = failure or exc
    return errors.exit_code(failure) if failure is not None else 0


def cmd_stop(args: argparse.Namespace, ctx: Any) -> int:
    engine = _engine(ctx)
    return _each(args.containers, lambda ref: engine.stop(ref, args.timeout))


def cmd_restart(args: argparse.Namespace, ctx: Any) -> int:
    engine = _engine(ctx)
    return _each(args.containers, lambda ref: engine.restart(ref, args.timeout))


def cmd_kill(args: argparse.Namespace, ctx: Any) -> int:
    engine = _engine(ctx)
    return _each(args.containers, lambda ref: engine.kill(ref, args.signal))


def cmd_pause(args: argparse.Namespace, ctx: Any) -> int:
    engine = _engine(ctx)
    return _each(args.containers, engine.pause)


def cmd_unpause(args: argparse.Namespace, ctx: Any) -> int:
    engine = _engine(ctx)
    return _each(args.containers, engine.unpause)


def cmd_rm(args: argparse.Namespace, ctx: Any) -> int:
    engine = _engine(ctx)
    refs = [c.id for c in engine.list(all=True)] if args.all else list(args.containers)
    if not refs and not args.all:
        raise errors.UsageError("rm: name at least one container (or -a)")
    failure: BaseException | None = None
    for ref in refs:
        try:
            print(engine.remove(ref, force=args.force))
        except Exception as exc:  # noqa: BLE001
            errors.report(exc)
            failure = failure or exc
    return errors.exit_code(failure, errors.REMOVE_CODES) if failure is not None else 0


def cmd_wait(args: argparse.Namespace, ctx: Any) -> int:
    engine = _engine(ctx)
    return _each(args.containers, engine.wait,
                 show=lambda code: str(code if code is not None else -1))


def cmd_cleanup(args: argparse.Namespace, ctx: Any) -> int:
    if not (Path(ctx.root) / "engine").is_dir():
        return 0  # the store was removed meanwhile: nothing to clean, and nothing to recreate
    _engine(ctx).cleanup(args.container)
    return 0


# -- ps / inspect ------------------------------------------------------------------------


def _status_text(c: Any) -> str:
    from corral.cli.image import human_ago

    st = c.state
    if c.status == "running":
        return "Up " + human_ago(st.started_at or c.created).replace(" ago", "")
    if c.status == "paused":
        return "Up (Paused)"
    if c.status == "exited":
        return f"Exited ({st.exit_code}) " + human_ago(st.finished_at or c.created)
    if c.status == "stopped":
        return "Stopped"
    return "Created"


def _row(c: Any) -> dict[str, Any]:
    return {"Id": c.id, "ID": c.id[:12], "Names": [c.name], "Name": c.name,
            "Image": c.image_name, "ImageID": c.image, "Command": c.command,
            "Created": c.created, "State": c.status, "Status": _status_text(c),
            "ExitCode": c.state.exit_code, "Pid": c.state.pid or 0,
            "Labels": c.config.labels, "RestartCount": c.state.restart_count,
            "Runtime": os.path.basename(c.runtime), "Ports": _ports_text(c),
            "Networks": [a["network"] for a in c.state.networks]}


def _ports_text(c: Any) -> str:
    """docker ps's PORTS: `127.0.0.1:8080->80/tcp, 0.0.0.0:32768->53/udp`."""
    return ", ".join(f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}->"
                     f"{p['container_port']}/{p.get('protocol') or 'tcp'}"
                     for p in c.state.ports)


def cmd_ps(args: argparse.Namespace, ctx: Any) -> int:
    import json

    from corral.cli.image import _print_table, human_ago

    filters: dict[str, list[str]] = {}
    for item in args.filter:
        key, eq, value = item.partition("=")
        if not eq:
            raise errors.UsageError(f"--filter: {item!r} is not KEY=VALUE")
        filters.setdefault(key, []).append(value)
    containers = _engine(ctx).list(all=args.all, filters=filters or None)
    if filters and not args.all and "status" not in filters:
        containers = [c for c in containers if c.status in ("running", "paused")]
    if args.format == "json":
        print(json.dumps([_row(c) for c in containers], indent=4))
        return 0
    if args.format and args.format != "table":
        import re

        for c in containers:
            row = _row(c)

            def field(m: Any, row: dict = row) -> str:
                value = row.get(m.group(1), "")
                if isinstance(value, list):
                    return ",".join(map(str, value)) if m.group(1) == "Names" else " ".join(
                        map(str, value))
                return str(value) if value is not None else ""

            text = re.sub(r"\{\{\s*\.(\w+)\s*\}\}", field, args.format)
            print(text.replace("\\t", "\t").replace("\\n", "\n"))
        return 0
    if args.quiet:
        for c in containers:
            print(c.id if args.no_trunc else c.id[:12])
        return 0
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    for c in containers:
        command = " ".join(c.command)
        if not args.no_trunc and len(command) > 20:
            command = command[:17] + "..."
        table.append((c.id if args.no_trunc else c.id[:12], c.image_name, command,
                      human_ago(c.created), _status_text(c), _ports_text(c), c.name))
    _print_table(table)
    return 0


def cmd_inspect(args: argparse.Namespace, ctx: Any) -> int:
    import json

    from corral.errors import NotFound

    engine = _engine(ctx)
    out = []
    failure = None
    for ref in args.images:
        try:
            try:
                out.append(engine.inspect(ref))
                continue
            except NotFound:
                if getattr(args, "only_containers", False):
                    raise
            from corral.cli.image import inspect_image

            out.append(inspect_image(ctx.store, ctx.store.image(ref)))
        except Exception as exc:  # noqa: BLE001
            failure = failure or exc
            errors.report(exc)
    fmt = getattr(args, "format", None)
    if fmt and fmt != "json":
        import re

        for item in out:
            def field(m: Any, item: Any = item) -> str:
                import json

                value: Any = item
                for part in m.group(1).split("."):
                    value = value.get(part, "") if isinstance(value, dict) else ""
                return json.dumps(value) if isinstance(value, dict | list) else str(value)

            print(re.sub(r"\{\{\s*\.([\w.]+)\s*\}\}", field, fmt))
    else:
        print(json.dumps(out, indent=4))
    return errors.exit_code(failure) if failure is not None else 0


# -- logs / exec / attach ----------------------------------------------------------------


def cmd_logs(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.logs import parse_since

    since = parse_since(args.since) if args.since else None
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for line in _engine(ctx).logs(args.container, follow=args.follow, since=since,
                                  tail=args.tail):
        stream = err if line.stream == "stderr" else out
        prefix = (line.timestamp + " ") if args.timestamps else ""
        stream.write((prefix + line.text + "\n").encode())
        if args.follow:
            stream.flush()
    return 0


def cmd_exec(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.attach import parse_detach_keys

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise errors.UsageError("exec: a command is needed")
    return _engine(ctx).exec(args.container, command, tty=args.tty,
                             interactive=args.interactive, user=args.user, env=args.env,
                             workdir=args.workdir, detach=args.detach,
                             detach_keys=parse_detach_keys(args.detach_keys))


def cmd_attach(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.attach import parse_detach_keys
    from corral.engine.engine import ContainerNotRunning

    engine = _engine(ctx)
    c = engine.get(args.container)
    if c.status != "running":
        raise ContainerNotRunning(f"container {c.name} is {c.status}, not running")
    sock = engine.attach_socket(c)
    if c.config.tty:
        from corral.engine import attach

        size = attach.window_size(0) or attach.window_size(1)
        if size:
            engine.resize(c, *size)
    stdin_fd = None if args.no_stdin or not c.config.interactive else 0
    return _pump(engine, c, sock, stdin_fd, parse_detach_keys(args.detach_keys), False)


# -- export ---------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace, ctx: Any) -> int:
    import tempfile

    from corral.errors import NotFound
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


# kept for other modules (cli.image's rmi, cli.system's fallbacks)
def runtime_state(store: Any, container_id: str, runtime: str | None = None) -> str | None:
    import json
    import subprocess

    from corral.engine.oci import default_runtime

    result = subprocess.run([runtime or default_runtime(), "--root",
                             str(Path(store.root) / "runtime"), "state", container_id],
                            capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout).get("status")
    except ValueError:
        return None


def runtime_delete(store: Any, container_id: str, *, force: bool,
                   runtime: str | None = None) -> None:
    import subprocess

    from corral.engine.oci import default_runtime

    argv = [runtime or default_runtime(), "--root", str(Path(store.root) / "runtime"),
            "delete"] + (["--force"] if force else []) + [container_id]
    subprocess.run(argv, capture_output=True, timeout=60, check=False)
