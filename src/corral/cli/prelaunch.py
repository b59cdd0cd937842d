"""`corral run`: the container's monitor launched before the CLI's own start-up.

conmon, and through it `corral-runtime create` (a second Python interpreter), take
~15 ms to be ready for the container's config.json. The engine already starts them
before it mounts the rootfs and writes the spec (`Engine.create(start_next=True)`),
but the argument parser, the store and the engine come first (~12 ms). Here, before
any of that, a light reading of the command line decides whether this is a `run`
whose monitor can be launched blind — the default runtime (of the flags and the
configuration files), a network that create can set up (none, private, host, bridge;
not container:) — and if so reserves the
container's directory (corral.storage.reservations) and starts conmon for it, with the
runtime waiting for config.json (corral.runtime.AWAIT_CONFIG_ENV).

The engine adopts the launch when it creates the record (`Engine.create(prelaunched=)`)
and checks that what was guessed here (store, runtime, -t, -i, network) is what the
real parser and the configuration decided; if not, the launch is abandoned and the
engine launches as usual. If the command fails before that (a bad flag, an unknown
image, a name in use), `abandon()` undoes it: the waiting runtime gets a config it
refuses, conmon exits, the directory goes.

The light reading gives up (no prelaunch, nothing lost) on anything it does not know.
`tests/unit/test_prelaunch.py` keeps its option tables equal to the real parser's.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: global options (cli/main.py) that take a value, and the flags
GLOBAL_VALUES = frozenset({"--root", "--storage-driver", "--runtime"})
GLOBAL_FLAGS = frozenset({"--debug"})
#: `run`'s options (cli/container.py, cli/run_options.py): flags, and those taking a value
RUN_FLAGS = frozenset({"--detach", "--init", "--interactive", "--privileged", "--publish-all",
                       "--read-only", "--rm", "--tty", "-P", "-d", "-i", "-t"})
RUN_VALUES = frozenset({
    "--add-host", "--cap-add", "--cap-drop", "--cgroup-conf", "--cgroup-parent",
    "--cpu-period", "--cpu-quota", "--cpu-shares", "--cpus", "--cpuset-cpus", "--cpuset-mems",
    "--detach-keys", "--device", "--dns", "--dns-option", "--dns-search", "--entrypoint",
    "--env", "--env-file", "--group-add", "--hostname", "--init-path", "--ip", "--ipc",
    "--label", "--mac-address", "--memory", "--memory-reservation", "--memory-swap",
    "--mount", "--name", "--net", "--network", "--network-alias", "--oom-score-adj", "--pid",
    "--pids-limit", "--publish", "--restart", "--runtime", "--security-opt", "--shm-size",
    "--stop-signal", "--stop-timeout", "--sysctl", "--tmpfs", "--ulimit", "--user", "--uts",
    "--volume", "--workdir", "-c", "-e", "-h", "-l", "-m", "-p", "-u", "-v", "-w"})
#: network modes whose monitor can be launched before the record (networking.launch_at_create)
LAUNCHABLE = ("none", "private", "host", "bridge")
#: as corral.storage.store's ROOT_ENV and DEFAULT_ROOT (the test checks)
ROOT_ENV = "CORRAL_ROOT"
DEFAULT_ROOT = "/var/lib/corral"


class Prelaunch:
    """A monitor launched for container `container_id` of the store at `root`, on the
    assumptions `runtime`, `tty`, `interactive` and `network`."""

    __slots__ = ("adopted", "bundle", "container_id", "interactive", "launch", "network",
                 "root", "runtime", "tty")

    def __init__(self, root: str, container_id: str, bundle: str, runtime: str, tty: bool,
                 interactive: bool, network: str) -> None:
        self.root = root
        self.container_id = container_id
        self.bundle = bundle
        self.runtime = runtime
        self.tty = tty
        self.interactive = interactive
        self.network = network
        self.launch = None  # conmon.Launch
        self.adopted = False  # Engine.create took it (and the directory with the record)

    def fits(self, root: object, runtime: str, config: Any) -> bool:
        """Launched as the engine would launch this container now?"""
        from pathlib import Path

        return (Path(self.root) == root and self.runtime == runtime
                and self.tty == bool(config.tty)
                and self.interactive == bool(config.interactive)
                and self.network == config.network and not config.log_path)


_pending: Prelaunch | None = None


def begin(argv: list[str]) -> None:
    """Launch the monitor if `argv` is a `run` that allows it (see the module's text).
    Best effort: any doubt or failure means no prelaunch."""
    global _pending, _config
    _config = None  # of an earlier command in this process
    if _pending is not None:
        return
    guess = read_run(argv)
    if guess is None:
        return
    root, tty, interactive, network = guess
    try:
        _pending = _launch(root, tty, interactive, network)
    except Exception:  # noqa: BLE001 - the engine launches as usual
        _pending = None


def pending() -> Prelaunch | None:
    """The launch for `Engine.create(prelaunched=...)`, if any."""
    return _pending


def abandon() -> None:
    """Undo a launch the engine did not adopt (the command failed before, or was not
    what it seemed): the runtime gets a config it refuses, conmon exits, the directory
    and conmon's socket link go."""
    global _pending
    pre, _pending = _pending, None
    if pre is None or pre.adopted:
        return
    import contextlib
    from pathlib import Path

    from corral.engine import conmon
    from corral.storage import reservations

    if pre.launch is not None:
        with contextlib.suppress(Exception):
            conmon.abandon(pre.launch, Path(pre.root), Path(pre.bundle), pre.runtime,
                           pre.container_id)
    reservations.discard(pre.bundle)


def read_run(argv: list[str]) -> tuple[str, bool, bool, str] | None:
    """(store root, -t, -i, network mode) if `argv` is a `run` whose monitor can be
    launched before parsing, else None."""
    from corral.engine.networking import parse_network_flags

    globals_: dict[str, str] = {}
    i, n = 0, len(argv)
    while i < n and argv[i] != "run":
        name, eq, value = argv[i].partition("=")
        if name in GLOBAL_VALUES:
            taken = _value(argv, i, value if eq else None)
            if taken is None:
                return None
            globals_[name], i = taken
        elif argv[i] not in GLOBAL_FLAGS:
            return None
        i += 1
    seen = _read_run_options(argv[i + 1:]) if i < n else None
    if seen is None:
        return None
    flags, values = seen
    if ("runtime" in values or "--runtime" in globals_
            or os.environ.get("CORRAL_OCI_RUNTIME")):
        return None
    config = _read_config()
    if config is None or config.runtime not in (None, "corral-runtime"):
        return None
    try:  # as the engine reads --network (none, private, host, bridge or network names)
        mode, _ = parse_network_flags(values.get("network", []),
                                      getattr(config, "netns", None) or "bridge")
    except Exception:  # noqa: BLE001 - the CLI reports it
        return None
    if mode not in LAUNCHABLE:
        return None  # container:ID is looked up at start
    # as cli.main.Context: --root, else $CORRAL_ROOT, else the file's, else the default
    root = globals_.get("--root") or os.environ.get(ROOT_ENV) or config.root or DEFAULT_ROOT
    return root, "tty" in flags, "interactive" in flags, mode


_config: object = None


def _read_config() -> object:
    """The configuration files' settings (corral.engine.config_file.load), kept for
    `config()`; None if they cannot be read (the CLI reports that, later)."""
    global _config
    from corral.engine import config_file

    try:
        _config = config_file.load()
    except Exception:  # noqa: BLE001 - reported by the CLI's own reading
        _config = None
    return _config


def config() -> object:
    """What `read_run` read of the configuration files, if it did (cli.main.Context uses
    it rather than reading them twice), else None."""
    return _config


def _read_run_options(args: list[str]) -> tuple[set[str], dict[str, list[str]]] | None:
    """`run`'s options before the image: (flags set, {option: values}) with long names
    without dashes; None if one is unknown, `--` comes, or there is no image."""
    flags: set[str] = set()
    values: dict[str, list[str]] = {}
    i, n = 0, len(args)
    while i < n:
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            return flags, values  # the image
        if arg == "--":
            return None
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in RUN_FLAGS and not eq:
                flags.add(_LONG.get(name, name)[2:])
            elif name in RUN_VALUES:
                taken = _value(args, i, value if eq else None)
                if taken is None:
                    return None
                value, i = taken
                values.setdefault(_LONG.get(name, name)[2:], []).append(value)
            else:
                return None
        else:  # -it, -e X, -eX
            j = 1
            while j < len(arg):
                option = "-" + arg[j]
                if option in RUN_FLAGS:
                    flags.add(_LONG[option][2:])
                    j += 1
                elif option in RUN_VALUES:
                    taken = _value(args, i, arg[j + 1:].removeprefix("=") or None)
                    if taken is None:
                        return None
                    value, i = taken
                    values.setdefault(_LONG.get(option, option)[2:], []).append(value)
                    break
                else:
                    return None
        i += 1
    return None  # no image


def _value(args: list[str], i: int, attached: str | None) -> tuple[str, int] | None:
    """An option's value at `args[i]`: `attached` (`--name=x`, `-ex`), else the next
    argument; with the index of the last argument used. None if there is none."""
    if attached is not None:
        return attached, i
    return (args[i + 1], i + 1) if i + 1 < len(args) else None


#: short options and aliases -> the long name the reading above records
_LONG = {"-t": "--tty", "-i": "--interactive", "-d": "--detach", "-P": "--publish-all",
         "--net": "--network"}


def _launch(root: str, tty: bool, interactive: bool, network: str) -> Prelaunch | None:
    from pathlib import Path

    from corral.engine import conmon
    from corral.engine.oci import default_runtime
    from corral.storage import reservations

    home = os.path.join(root, "storage")
    if not os.path.isdir(os.path.join(home, "containers")):
        return None  # a store not made yet: the usual path makes it
    os.makedirs(conmon.exits_dir(Path(root)), exist_ok=True)  # as Engine() does
    runtime = default_runtime()
    if os.path.basename(runtime) != "corral-runtime":
        return None
    container_id = os.urandom(32).hex()
    bundle = reservations.reserve(home, container_id)
    pre = Prelaunch(root, container_id, bundle, runtime, tty, interactive, network)
    try:
        pre.launch = conmon.spawn_monitor(
            Path(root), container_id, container_id[:12], runtime, Path(bundle),
            Path(bundle) / "ctr.log", tty=tty, stdin=interactive, await_config=True)
    except BaseException:
        reservations.discard(bundle)
        raise
    return pre


__all__ = ["Prelaunch", "abandon", "begin", "config", "pending", "read_run"]
