"""`corral info|version|cp|commit|rename|port|top|stats|container prune`.

Container lookups go through the engine (`corral.engine.Engine`) when it is there;
`cp` and `commit` work on the storage record (the RW layer), `top` and `stats` ask the
container's OCI runtime (`ps`, `events --stats`), so they work with any runc-CLI
runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from corral.cli import errors
from corral.errors import FailedPrecondition, InvalidArgument


class NotRunning(FailedPrecondition):
    """The container is not running."""


def register(commands: Any) -> None:
    p = commands.add_parser("info", help="show information about the host and the store")
    p.add_argument("-f", "--format", help="json")
    p.set_defaults(func=cmd_info)

    p = commands.add_parser("version", help="show version information")
    p.add_argument("-f", "--format", help="json")
    p.set_defaults(func=cmd_version)

    p = commands.add_parser("cp", help="copy files between a container and the host")
    p.add_argument("-a", "--archive", action="store_true",
                   help="keep owners (default: files copied in belong to root)")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("source", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.set_defaults(func=cmd_cp)

    p = commands.add_parser("commit", help="make an image from a container's changes")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Dockerfile instruction (CMD, ENTRYPOINT, ENV, ...)")
    p.add_argument("-m", "--message")
    p.add_argument("-a", "--author")
    p.add_argument("-p", "--pause", action="store_true", help="accepted; no effect")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("image", nargs="?", metavar="IMAGE")
    p.set_defaults(func=cmd_commit)

    p = commands.add_parser("rename", help="rename a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("name", metavar="NEW_NAME")
    p.set_defaults(func=cmd_rename)

    p = commands.add_parser("port", help="list a container's published ports")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    p.set_defaults(func=cmd_port)

    p = commands.add_parser("top", help="show a container's processes")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS-OPTIONS")
    p.set_defaults(func=cmd_top)

    p = commands.add_parser("stats", help="show running containers' resource usage")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--format", help="json")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.set_defaults(func=cmd_stats)

    _register_container_prune(commands)


def _register_container_prune(commands: Any) -> None:
    """`container prune`, under the `container` noun (created here unless it exists)."""
    parent = commands.choices.get("container")
    if parent is None:
        parent = commands.add_parser("container", help="manage containers")
    sub = None
    if parent._subparsers is not None:
        for action in parent._subparsers._group_actions:
            if isinstance(action, argparse._SubParsersAction):
                sub = action
    if sub is None:
        sub = parent.add_subparsers(dest="container_command", metavar="COMMAND",
                                    parser_class=type(parent))
        sub.required = True
    p = sub.add_parser("prune", help="remove every stopped container")
    p.add_argument("-f", "--force", action="store_true", help="do not ask (never asks)")
    p.add_argument("--filter", action="append", default=[], help="label=KEY[=VALUE]")
    p.set_defaults(func=cmd_container_prune)


# -- helpers -----------------------------------------------------------------------------


def engine_of(ctx: Any) -> Any:
    """The engine for this CLI call (None while the engine package lacks one)."""
    engine = getattr(ctx, "engine", None)
    if engine is not None:
        return engine
    try:
        from corral.engine import Engine  # type: ignore[attr-defined]
    except ImportError:
        return None
    return Engine(root=ctx.root, storage_driver=ctx.driver, runtime=ctx.runtime)


def _runtime_root(ctx: Any) -> str:
    return str(getattr(ctx, "runtime_root", None) or Path(ctx.root) / "runtime")


def _record_runtime(ctx: Any, container_id: str) -> list[str]:
    """`[runtime, --root, DIR]` for the container: its engine record's runtime (and that
    runtime's state directory), else the CLI's runtime with <root>/runtime."""
    path = ctx.store.container_dir(container_id) / "corral.json"
    try:
        runtime = json.loads(path.read_text()).get("runtime")
    except (OSError, ValueError):
        runtime = None
    if runtime:
        from corral.engine.oci import runtime_root

        return [runtime, "--root", runtime_root(Path(ctx.root), runtime)]
    return [ctx.runtime, "--root", _runtime_root(ctx)]


def runtime_state(ctx: Any, container_id: str) -> dict:
    result = subprocess.run([*_record_runtime(ctx, container_id), "state", container_id],
                            capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        return {}
    try:
        return json.loads(result.stdout)
    except ValueError:
        return {}


def _running_pid(ctx: Any, container_id: str) -> int | None:
    state = runtime_state(ctx, container_id)
    if state.get("status") in ("running", "paused") and state.get("pid"):
        return int(state["pid"])
    return None


def _split_container_path(text: str) -> tuple[str | None, str]:
    """`CONTAINER:PATH` → (container, path); a host path → (None, path)."""
    if text.startswith(("/", "./", "../")) or text in (".", "-"):
        return None, text
    name, sep, path = text.partition(":")
    if not sep:
        return None, text
    return name, path or "/"


# -- info / version ------------------------------------------------------------------------


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("corral")
    except Exception:  # noqa: BLE001 - running from a tree without metadata
        return "0.0.0"


def _tool_version(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 \
        and (result.stdout or result.stderr).strip() else ""


def cmd_version(args: argparse.Namespace, ctx: Any) -> int:
    info = {"Client": {"Version": _version(), "PythonVersion": platform.python_version(),
                       "OsArch": f"linux/{platform.machine()}",
                       "BuiltTime": "", "APIVersion": "1"}}
    if args.format == "json":
        print(json.dumps(info, indent=4))
        return 0
    if args.format:
        raise errors.UsageError("--format: only json is supported")
    client = info["Client"]
    print(f"Version:      {client['Version']}")
    print(f"Python:       {client['PythonVersion']}")
    print(f"OS/Arch:      {client['OsArch']}")
    return 0


def _cgroup_version() -> str:
    return "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cmd_info(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine import config_file
    from corral.engine.volumes import VolumeStore

    store = ctx.store
    config = getattr(ctx, "config", None) or config_file.load()
    containers = store.list_containers()
    states = {"running": 0, "paused": 0, "stopped": 0}
    for record in containers:
        status = runtime_state(ctx, record.id).get("status")
        if status in ("running", "paused"):
            states[status] += 1
        else:
            states["stopped"] += 1
    import shutil as _sh

    conmon = _sh.which("conmon") or ""
    os_release = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            os_release[key] = value.strip('"')
    except OSError:
        pass
    info = {
        "host": {
            "arch": platform.machine(), "kernel": platform.release(), "os": "linux",
            "distribution": {"distribution": os_release.get("ID", ""),
                             "version": os_release.get("VERSION_ID", "")},
            "hostname": platform.node(), "cpus": os.cpu_count() or 0,
            "memTotal": _mem_total(), "cgroupVersion": _cgroup_version(),
            "ociRuntime": {"path": ctx.runtime,
                           "version": _tool_version([ctx.runtime, "--version"])},
            "conmon": {"path": conmon, "version": _tool_version([conmon, "--version"])
                       if conmon else ""},
            "security": {"seccompEnabled": True, "defaultCapabilities":
                         ",".join(config.default_capabilities)},
        },
        "store": {
            "graphRoot": str(store.root), "graphDriverName": store.driver.name,
            "runRoot": _runtime_root(ctx),
            "imageStore": {"number": len(store.list_images())},
            "containerStore": {"number": len(containers), **states},
            "volumeStore": {"number": len(VolumeStore.for_store(store).list())},
            "configFiles": list(config.sources),
        },
        "version": {"Version": _version(), "PythonVersion": platform.python_version()},
        "network": _network_info(ctx, config),
    }
    if args.format == "json":
        print(json.dumps(info, indent=4))
        return 0
    if args.format:
        raise errors.UsageError("--format: only json is supported")
    _print_yamlish(info)
    return 0


def _network_info(ctx: Any, config: Any) -> dict[str, Any]:
    """The network backend: CNI plugin directories, the default network and whether its
    plugins are ready (CNI STATUS; for lists before 1.1.0, that each plugin is found)."""
    from corral.engine.networking import manager
    from corral.network.cni.client import CNIError

    engine = engine_of(ctx)
    m = manager(engine)
    ready, problem = True, ""
    try:
        default = m.networks.get(config.default_network) \
            if (m.networks.dir / f"{config.default_network}.json").exists() else None
        if default is not None:
            m.cni.status(default.conflist())
        else:
            for plugin in ("bridge", "host-local", "portmap", "firewall", "tuning"):
                m.cni.find_plugin(plugin)
    except CNIError as exc:
        ready, problem = False, str(exc)
    return {"backend": "cni", "cniPluginDirs": list(m.cni.paths),
            "defaultNetwork": config.default_network, "defaultSubnet": config.default_subnet,
            "defaultBridge": config.default_bridge, "networks": len(m.networks.list()),
            "ready": ready, **({"problem": problem} if problem else {})}


def _print_yamlish(value: Any, indent: int = 0) -> None:
    for key, item in value.items():
        if isinstance(item, dict):
            print(" " * indent + f"{key}:")
            _print_yamlish(item, indent + 2)
        else:
            print(" " * indent + f"{key}: {item}")


# -- cp / commit ----------------------------------------------------------------------------


def cmd_cp(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine import cp

    src_container, src = _split_container_path(args.source)
    dest_container, dest = _split_container_path(args.dest)
    if (src_container is None) == (dest_container is None):
        raise errors.UsageError("cp: copy between a container and the host: one of SRC and "
                                "DEST must be CONTAINER:PATH")
    store = ctx.store
    if src_container is not None:
        record = store.container(src_container)
        pid = _running_pid(ctx, record.id)
        if dest == "-":
            cp.tar_from_container(store, record.id, src, sys.stdout.buffer, pid=pid)
            sys.stdout.buffer.flush()
            return 0
        cp.copy_from_container(store, record.id, src, dest, pid=pid,
                               follow_link=args.follow_link)
        return 0
    assert dest_container is not None
    record = store.container(dest_container)
    if src == "-":
        cp.untar_into_container(store, record.id, dest, sys.stdin.buffer,
                                pid=_running_pid(ctx, record.id), tmpdir=ctx.tmpdir)
        return 0
    cp.copy_to_container(store, record.id, src, dest, pid=_running_pid(ctx, record.id),
                         archive=args.archive, follow_link=args.follow_link)
    return 0


def cmd_commit(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.commit import commit

    record = ctx.store.container(args.container)
    image_id = commit(ctx.store, record.id, args.image, changes=args.change,
                      message=args.message, author=args.author, tmpdir=ctx.tmpdir)
    print(image_id.removeprefix("sha256:"))
    return 0


# -- rename / port / top / stats / prune -----------------------------------------------------


def cmd_rename(args: argparse.Namespace, ctx: Any) -> int:
    engine = engine_of(ctx)
    if engine is None or not hasattr(engine, "rename"):
        raise errors.UsageError("rename: needs the engine (corral.engine.Engine)")
    engine.rename(args.container, args.name)
    return 0


def cmd_port(args: argparse.Namespace, ctx: Any) -> int:
    """Published ports as `PRIVATE/PROTO -> HOSTIP:HOSTPORT` (of a running container:
    host ports given as 0 are the ones the kernel picked at start)."""
    from corral.engine.networking import port_lines

    engine = engine_of(ctx)
    if engine is None:
        raise errors.UsageError("port: needs the engine (corral.engine.Engine)")
    for line in port_lines(engine.get(args.container)):
        private = line.split(" ", 1)[0]
        if args.port and args.port not in (private, private.split("/")[0]):
            continue
        print(line)
    return 0


def cmd_top(args: argparse.Namespace, ctx: Any) -> int:
    record = ctx.store.container(args.container)
    if _running_pid(ctx, record.id) is None:
        raise NotRunning(f"container {args.container} is not running")
    ps_args = list(args.ps_args)
    if ps_args and ps_args[0] == "--":
        ps_args = ps_args[1:]
    argv = [*_record_runtime(ctx, record.id), "ps", record.id]
    argv += ps_args  # after the id: runc (and corral-runtime) stop parsing flags there
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise InvalidArgument(f"top: {result.stderr.strip() or 'ps failed'}")
    sys.stdout.write(result.stdout)
    return 0


def _stats_sample(ctx: Any, container_id: str) -> dict | None:
    from corral.engine.oci import OCIRuntime

    runtime, _, root = _record_runtime(ctx, container_id)
    return OCIRuntime(runtime, root).stats(container_id)


def _name_of(record: Any) -> str:
    return record.names[0] if record.names else record.id[:12]


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size}"


def _stats_rows(ctx: Any, records: list, interval: float,
                previous: dict[str, tuple[float, int]]) -> list[dict]:
    rows = []
    mem_total = _mem_total()
    for record in records:
        data = _stats_sample(ctx, record.id)
        if data is None:
            continue
        now = time.monotonic()
        cpu_total = int(((data.get("cpu") or {}).get("usage") or {}).get("total") or 0)
        before = previous.get(record.id)
        cpu_percent = 0.0
        if before is not None and now > before[0]:
            cpu_percent = max(0.0, (cpu_total - before[1]) / ((now - before[0]) * 1e9) * 100)
        previous[record.id] = (now, cpu_total)
        memory = (data.get("memory") or {}).get("usage") or {}
        usage = int(memory.get("usage") or 0)
        limit = int(memory.get("limit") or 0)
        if not limit or limit >= 1 << 62:
            limit = mem_total
        pids = int((data.get("pids") or {}).get("current") or 0)
        rows.append({"id": record.id, "name": _name_of(record),
                     "cpu_percent": round(cpu_percent, 2), "cpu_nano": cpu_total,
                     "mem_usage": usage, "mem_limit": limit,
                     "mem_percent": round(usage / limit * 100, 2) if limit else 0.0,
                     "pids": pids})
    return rows


def cmd_stats(args: argparse.Namespace, ctx: Any) -> int:
    store = ctx.store
    if args.containers:
        records = [store.container(ref) for ref in args.containers]
        for record, ref in zip(records, args.containers):
            if _running_pid(ctx, record.id) is None:
                raise NotRunning(f"container {ref} is not running")
    else:
        records = [r for r in store.list_containers()
                   if args.all or _running_pid(ctx, r.id) is not None]
    previous: dict[str, tuple[float, int]] = {}
    _stats_rows(ctx, records, args.interval, previous)  # a first sample for CPU %
    time.sleep(min(args.interval, 1.0) if args.no_stream else args.interval)
    while True:
        rows = _stats_rows(ctx, records, args.interval, previous)
        if args.format == "json":
            print(json.dumps(rows, indent=4))
        elif args.format:
            raise errors.UsageError("--format: only json is supported")
        else:
            from corral.cli.image import _print_table

            table = [("ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS")]
            for row in rows:
                table.append((row["id"][:12], row["name"], f"{row['cpu_percent']:.2f}%",
                              f"{_human(row['mem_usage'])} / {_human(row['mem_limit'])}",
                              f"{row['mem_percent']:.2f}%", str(row["pids"])))
            if not args.no_stream:
                print("\033[2J\033[H", end="")
            _print_table(table)
        sys.stdout.flush()
        if args.no_stream:
            return 0
        time.sleep(args.interval)


def cmd_container_prune(args: argparse.Namespace, ctx: Any) -> int:
    from corral.engine.options import parse_key_values

    wanted = parse_key_values([f.partition("=")[2] for f in args.filter
                               if f.startswith("label=")], "--filter label")
    engine = engine_of(ctx)
    removed = []
    if engine is not None:
        for container in engine.list(all=True):
            status = str(getattr(getattr(container, "state", None), "status", "") or "")
            if status in ("running", "paused") or status.startswith(("Up", "running")):
                continue
            labels = getattr(getattr(container, "config", None), "labels", None) or {}
            if any(k not in labels or (v and labels[k] != v) for k, v in wanted.items()):
                continue
            engine.remove(container.id)
            removed.append(container.id)
        engine.sweep_runtime_orphans()  # a killed `run --rm` finisher's leftovers
    else:
        from corral.cli.container import runtime_delete

        for record in ctx.store.list_containers():
            if _running_pid(ctx, record.id) is not None:
                continue
            runtime_delete(ctx.store, record.id, force=True, runtime=ctx.runtime)
            ctx.store.remove_container(record.id)
            removed.append(record.id)
    for container_id in removed:
        print(container_id)
    return 0


__all__ = ["engine_of", "register"]
