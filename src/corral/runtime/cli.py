"""The `corral-runtime` command line: runc's contract (runc(8) and its subcommand pages).

This module only parses arguments and reports errors; the verbs live in their
own modules. It imports nothing but the standard library's cheapest modules at
start-up (a test guards this): argparse alone would cost more than runc's
whole start. Flags are accepted the way runc's CLI library takes them: `--name
value`, `--name=value`, and `-name value`.
"""

from __future__ import annotations

import sys

USAGE = """usage: corral-runtime [global options] COMMAND [options] [arguments]

An OCI runtime with runc's command-line contract.

Commands:
  create    create a container from a bundle; its process waits for `start`
  start     start the user process of a created container
  run       create and start a container, then wait for it (foreground)
  state     print a container's state as JSON
  kill      send a signal to the container's init (--all: to every process)
  delete    remove a stopped container (--force: kill it first)
  exec      run a new process inside a running container
  ps        list the processes of a container
  list      list the containers
  pause     freeze every process of a container
  resume    thaw a paused container
  update    change a container's resource limits (flags or -r resources.json)
  events    print a container's stats and OOM events as JSON (--stats: once)
  spec      write a template config.json
  features  print what this runtime supports (JSON)

Global options:
  --root DIR          state directory (default /run/corral-runtime)
  --log FILE          also write errors and warnings to FILE
  --log-format FMT    text or json
  --debug             log debug messages
  --version, -v       print the version
"""

# name -> (takes a value?, repeatable?, canonical name)
_GLOBAL = {
    "root": (True, False, "root"), "log": (True, False, "log"),
    "log-format": (True, False, "log_format"), "debug": (False, False, "debug"),
    "systemd-cgroup": (False, False, "systemd_cgroup"), "criu": (True, False, "criu"),
    "rootless": (True, False, "rootless"), "version": (False, False, "version"),
    "v": (False, False, "version"), "help": (False, False, "help"), "h": (False, False, "help"),
}
_CREATE = {
    "bundle": (True, False, "bundle"), "b": (True, False, "bundle"),
    "console-socket": (True, False, "console_socket"), "pid-file": (True, False, "pid_file"),
    "no-pivot": (False, False, "no_pivot"), "no-new-keyring": (False, False, "no_new_keyring"),
    "preserve-fds": (True, False, "preserve_fds"), "help": (False, False, "help"),
    "h": (False, False, "help"),
}
_RUN = dict(_CREATE, detach=(False, False, "detach"), d=(False, False, "detach"),
            keep=(False, False, "keep"))
_EXEC = {
    "console-socket": (True, False, "console_socket"), "cwd": (True, False, "cwd"),
    "env": (True, True, "env"), "e": (True, True, "env"), "tty": (False, False, "tty"),
    "t": (False, False, "tty"), "user": (True, False, "user"), "u": (True, False, "user"),
    "additional-gids": (True, True, "additional_gids"), "g": (True, True, "additional_gids"),
    "process": (True, False, "process"), "p": (True, False, "process"),
    "detach": (False, False, "detach"), "d": (False, False, "detach"),
    "pid-file": (True, False, "pid_file"), "process-label": (True, False, "process_label"),
    "apparmor": (True, False, "apparmor"), "no-new-privs": (False, False, "no_new_privs"),
    "cap": (True, True, "cap"), "c": (True, True, "cap"),
    "preserve-fds": (True, False, "preserve_fds"), "cgroup": (True, True, "cgroup"),
    "ignore-paused": (False, False, "ignore_paused"), "help": (False, False, "help"),
}
_COMMANDS: dict[str, dict] = {
    "create": _CREATE, "run": _RUN, "exec": _EXEC,
    "start": {}, "state": {}, "pause": {}, "resume": {}, "features": {},
    "kill": {"all": (False, False, "all"), "a": (False, False, "all")},
    "delete": {"force": (False, False, "force"), "f": (False, False, "force")},
    "ps": {"format": (True, False, "format"), "f": (True, False, "format")},
    "list": {"format": (True, False, "format"), "f": (True, False, "format"),
             "quiet": (False, False, "quiet"), "q": (False, False, "quiet")},
    "spec": {"bundle": (True, False, "bundle"), "b": (True, False, "bundle"),
             "rootless": (False, False, "rootless")},
}
_UPDATE = {name: (True, False, name.replace("-", "_")) for name in (
    "memory", "memory-swap", "memory-reservation", "kernel-memory", "kernel-memory-tcp",
    "cpu-shares", "cpu-quota", "cpu-period", "cpu-burst", "cpu-rt-runtime", "cpu-rt-period",
    "cpuset-cpus", "cpuset-mems", "pids-limit", "blkio-weight", "l3-cache-schema",
    "mem-bw-schema", "resources")}
_UPDATE.update({"cpu-share": (True, False, "cpu_shares"), "r": (True, False, "resources"),
                "help": (False, False, "help"), "h": (False, False, "help")})
_COMMANDS["update"] = _UPDATE
_COMMANDS["events"] = {"stats": (False, False, "stats"), "interval": (True, False, "interval"),
                       "help": (False, False, "help"), "h": (False, False, "help")}
_ALIASES = {"ls": "list", "rm": "delete"}


class UsageError(Exception):
    pass


def parse_flags(args: list[str], table: dict, stop_at_positional: bool = True
                ) -> tuple[dict, list[str]]:
    """Split `args` into {flag: value} and positional arguments."""
    flags: dict = {}
    positional: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            positional.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-" or positional and stop_at_positional:
            positional.append(arg)
            if stop_at_positional:
                positional.extend(args[index:])
                break
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        spec = table.get(name)
        if spec is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        takes_value, repeatable, key = spec
        if takes_value:
            if not has_value:
                if index >= len(args):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = args[index]
                index += 1
            if repeatable:
                flags.setdefault(key, []).append(value)
            else:
                flags[key] = value
        else:
            flags[key] = value.lower() not in ("false", "0") if has_value else True
    return flags, positional


class Logger:
    """runc's --log/--log-format: plain text on stderr, JSON lines in the log file."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt or "text"
        self.debug_enabled = debug

    def write(self, level: str, message: str) -> None:
        if level == "debug" and not self.debug_enabled:
            return
        if self.path:
            import time

            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            if self.fmt == "json":
                from corral.oci.fastjson import dumps

                line = dumps({"level": level, "msg": message, "time": stamp}) + "\n"
            else:
                line = f'time="{stamp}" level={level} msg="{message}"\n'
            try:
                with open(self.path, "a") as f:
                    f.write(line)
            except OSError:
                pass
        if level in ("error", "warning"):
            sys.stderr.write(f"corral-runtime: {message}\n")
            sys.stderr.flush()


def _one_id(positional: list[str], command: str) -> str:
    if len(positional) != 1:
        raise UsageError(f"{command}: expects exactly one container id, got {len(positional)}")
    return positional[0]


def _int_flag(flags: dict, key: str, name: str) -> int:
    value = flags.get(key, "0")
    if not str(value).isdigit():
        raise UsageError(f"--{name}: {value!r} is not a number")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    log = Logger(None, "text", False)
    try:
        global_flags, rest = parse_flags(args, _GLOBAL)
        log = Logger(global_flags.get("log"), global_flags.get("log_format", "text"),
                     bool(global_flags.get("debug")))
        if global_flags.get("version"):
            from corral import __version__
            from corral.oci.runtime_config import OCI_VERSION

            print(f"corral-runtime version {__version__}\nspec: {OCI_VERSION}")
            return 0
        if not rest or global_flags.get("help") or rest[0] in ("help", "--help"):
            sys.stdout.write(USAGE)
            return 0 if global_flags.get("help") or rest[:1] == ["help"] else 1
        command = _ALIASES.get(rest[0], rest[0])
        if command not in _COMMANDS:
            raise UsageError(f"unknown command {rest[0]!r}")
        flags, positional = parse_flags(rest[1:], _COMMANDS[command])
        if flags.get("help"):
            sys.stdout.write(USAGE)
            return 0
        root = global_flags.get("root") or "/run/corral-runtime"
        if command not in _BRIEF:  # the launcher imported with it off (corral.quick_exit)
            from corral.quick_exit import collect_garbage_from_now

            collect_garbage_from_now()
        return _dispatch(command, root, flags, positional, log)
    except UsageError as exc:
        log.write("error", str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the edge: every error becomes a message
        from corral.errors import CorralError

        if isinstance(exc, (CorralError, OSError)):
            log.write("error", str(exc))
        else:
            import traceback

            log.write("error", f"internal error: {exc!r}")
            traceback.print_exc()
        return 1


#: commands that exit as soon as their work is done: they run with the cyclic GC off.
#: A collection costs them time and frees nothing they keep (what they allocate dies
#: with the process): `create` with its preload ran 7-8 young-generation collections,
#: ~0.4-0.7 ms in all (measured). Others (`run`, `exec`, `events`) may live as long as
#: a container.
_BRIEF = frozenset({"create", "start", "kill", "delete", "state", "pause", "resume",
                    "update", "ps", "list", "features", "spec"})


def _dispatch(command: str, root: str, flags: dict, positional: list[str], log: Logger) -> int:
    if command in ("create", "run", "exec"):
        from corral.runtime.exe_guard import warning

        message = warning()
        if message:
            log.write("warning", message)
    if command in ("create", "run", "update"):
        from corral.linux.cgroups.common import set_warning_sink

        set_warning_sink(lambda message: log.write("warning", message))
    if command in ("create", "run"):
        return _create_or_run(command, root, flags, positional)
    if command == "start":
        from corral.runtime.container_start import start

        start(root, _one_id(positional, command))
        return 0
    if command == "state":
        from corral.oci.fastjson import dumps
        from corral.runtime.state import Container

        container = Container.load(root, _one_id(positional, command))
        print(dumps(container.runc_state()))
        return 0
    if command == "kill":
        from corral.linux import signals
        from corral.runtime.container_kill import kill

        if not 1 <= len(positional) <= 2:
            raise UsageError("kill: usage: kill [--all] ID [SIGNAL]")
        number = signals.parse(positional[1] if len(positional) > 1 else "SIGTERM")
        kill(root, positional[0], number, bool(flags.get("all")))
        return 0
    if command == "delete":
        from corral.runtime.container_delete import delete

        if not positional:
            raise UsageError("delete: expects at least one container id")
        for container_id in positional:
            try:
                delete(root, container_id, bool(flags.get("force")))
            except Exception as exc:  # report each, like runc
                from corral.runtime.state import ContainerNotFound

                if isinstance(exc, ContainerNotFound) and flags.get("force"):
                    continue
                raise
        return 0
    if command == "exec":
        return _exec(root, flags, positional)
    if command == "list":
        from corral.runtime.listing import list_containers

        list_containers(root, flags.get("format", "table"), bool(flags.get("quiet")))
        return 0
    if command == "ps":
        from corral.runtime.listing import ps

        if not positional:
            raise UsageError("ps: expects a container id")
        return ps(root, positional[0], flags.get("format", "table"), positional[1:])
    if command in ("pause", "resume"):
        from corral.runtime.freeze import set_frozen

        set_frozen(root, _one_id(positional, command), command == "pause")
        return 0
    if command == "update":
        from corral.runtime import container_update

        container_id = _one_id(positional, command)
        if flags.get("resources"):
            new = container_update.load_resources_file(flags["resources"])
        else:
            new = container_update.resources_from_flags(flags)
        container_update.update(root, container_id, new)
        return 0
    if command == "events":
        from corral.runtime.events import events, parse_duration

        interval = parse_duration(flags.get("interval") or "5s")
        return events(root, _one_id(positional, command), interval, bool(flags.get("stats")))
    if command == "spec":
        from corral.runtime.spec_template import write_spec

        write_spec(flags.get("bundle") or ".", bool(flags.get("rootless")))
        return 0
    if command == "features":
        from corral.oci.fastjson import dumps
        from corral.runtime.features import features

        print(dumps(features()))
        return 0
    raise UsageError(f"unknown command {command!r}")


def _await_config(bundle: str) -> None:
    """With $CORRAL_RUNTIME_AWAIT_CONFIG (Corral's engine sets it; see corral.runtime):
    wait up to that many seconds for <bundle>/config.json, which the engine writes
    atomically (a rename) while this process starts. Meanwhile `create`'s
    config-independent work is done ahead (container_create.preload).

    The wait polls, every 0.2 ms at first (the engine is usually done within tens of
    ms), then less often. Not inotify: closing an inotify instance waits for an SRCU
    grace period (fsnotify_destroy_group), measured at up to 15 ms here, on the path of
    every `run` (and an exit with it open pays the same)."""
    import os

    from corral.runtime import AWAIT_CONFIG_ENV

    wait = os.environ.get(AWAIT_CONFIG_ENV)
    path = os.path.join(bundle, "config.json")
    if not wait or os.path.exists(path):
        return
    import time

    from corral.runtime.container_create import preload

    deadline = time.monotonic() + float(wait)
    preload(lambda: os.path.exists(path))
    brisk_until = time.monotonic() + 0.3
    delay = 0.0002
    while not os.path.exists(path):
        now = time.monotonic()
        if now > deadline:
            from corral.errors import InvalidArgument

            raise InvalidArgument(f"{path}: not written within {wait} s")
        if now > brisk_until:
            delay = min(delay * 1.5, 0.01)
        time.sleep(delay)


def _create_or_run(command: str, root: str, flags: dict, positional: list[str]) -> int:
    from corral.runtime.container_create import CreateOptions, create, load_config

    container_id = _one_id(positional, command)
    if command == "create":
        _await_config(flags.get("bundle") or ".")
    foreground = command == "run" and not flags.get("detach")
    options = CreateOptions(flags.get("bundle") or ".", flags.get("pid_file"),
                            flags.get("console_socket"), bool(flags.get("no_pivot")),
                            _int_flag(flags, "preserve_fds", "preserve-fds"),
                            subreaper=foreground)
    options.no_new_keyring = bool(flags.get("no_new_keyring"))
    proxy = None
    if foreground and not options.console_socket:
        options.config = load_config(options.bundle)
        if options.config["process"].get("terminal"):
            from corral.runtime.foreground import TerminalProxy

            proxy = TerminalProxy()
            options.console_fd = proxy.child_fd()
    container = create(root, container_id, options)
    if command == "create":
        return 0
    from corral.runtime.container_start import start

    if proxy is not None:
        proxy.receive_master()
    elif foreground:  # forward from before start, or a signal there kills us, not the container
        from corral.runtime.foreground import forward_signals

        forward_signals(container.pid)
    start(root, container_id)
    if not foreground:
        return 0
    from corral.runtime.container_delete import delete

    try:
        if proxy is not None:
            code = proxy.copy_until_exit(container.pid)
        else:
            from corral.runtime.foreground import wait_forwarding_signals

            code = wait_forwarding_signals(container.pid)
    finally:
        if not flags.get("keep"):
            delete(root, container_id, force=True)
    return code


def _exec(root: str, flags: dict, positional: list[str]) -> int:
    from corral.runtime import container_exec as ex
    from corral.runtime.state import Container

    if not positional:
        raise UsageError("exec: expects a container id")
    container_id, args = positional[0], positional[1:]
    if flags.get("process"):
        process = ex.load_process_file(flags["process"])
        if flags.get("tty"):
            process["terminal"] = True
    else:
        try:
            gids = [int(g) for g in flags.get("additional_gids", [])]
        except ValueError:
            raise UsageError("--additional-gids: expects numbers") from None
        process = ex.process_from_flags(
            Container.load(root, container_id), args, env=flags.get("env", []),
            cwd=flags.get("cwd"), user=flags.get("user"), tty=bool(flags.get("tty")),
            capabilities=flags.get("cap", []), no_new_privs=bool(flags.get("no_new_privs")),
            additional_gids=gids, apparmor=flags.get("apparmor"),
            process_label=flags.get("process_label"))
    options = ex.ExecOptions(process, flags.get("console_socket"), flags.get("pid_file"),
                             bool(flags.get("detach")),
                             _int_flag(flags, "preserve_fds", "preserve-fds"))
    result = ex.exec_process(root, container_id, options)
    return 0 if options.detach else result


if __name__ == "__main__":
    from corral.quick_exit import run

    run(main)
